# VPT-deep in the papers' own ADE20K protocol
# (../_base_/setr_pup_vitl_ade20k.py: SETR-PUP with a frozen ViT-L/16, whose
# `pretrained` variable names the checkpoint): 200 prompts per layer
# inserted into the token sequence.
# Reported: 42.11 / 44.06 mIoU (single / multi-scale).
_base_ = ['../_base_/setr_pup_vitl_ade20k.py']

model = dict(
    backbone=dict(
        type='VPTViT', num_prompts=200, prompt_depth='deep',
        prompt_dropout=0.1,
        prompt_cfg=dict(type='LayerPrompts', init='uniform')))
