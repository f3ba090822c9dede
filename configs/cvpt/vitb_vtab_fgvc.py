# CVPT on VTAB-1K / FGVC: choose the task with --cfg-options task=NAME.
# P and lr come from the task table unless set here or on the command line.
_base_ = ['../_base_/vtab_fgvc.py']

model = dict(
    backbone=dict(
        vit=dict(
            type='CVPTViT',
            num_prompts=None,
            prompt_depth='deep',
            prompt_dropout=0.1,
            ca_position=3,
            ca_weights='shared',
            frozen_eval=True)))
