# VPT-deep on VTAB-1K / FGVC: choose the task with --cfg-options task=NAME.
# P and lr come from the task table (CVPT's reference recipe) unless set here
# or on the command line (VPT picked its own per task on val200).
_base_ = ['../_base_/vtab_fgvc.py']

model = dict(
    backbone=dict(
        vit=dict(
            type='VPTViT',
            num_prompts=None,
            prompt_depth='deep',
            prompt_dropout=0.1,
            frozen_eval=True)))
