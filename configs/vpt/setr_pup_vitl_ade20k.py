# VPT-deep in the papers' own ADE20K protocol: SETR-PUP with a frozen
# ViT-L/16, 200 prompts per layer inserted into the token sequence; all else
# as ../cvpt/setr_pup_vitl_ade20k.py (whose `pretrained` variable names the
# checkpoint). Reported: 42.11 / 44.06 mIoU (single / multi-scale).
_base_ = ['../cvpt/setr_pup_vitl_ade20k.py']

model = dict(
    backbone=dict(
        type='VPTViT', prompt_cfg=dict(type='LayerPrompts', init='uniform')))
