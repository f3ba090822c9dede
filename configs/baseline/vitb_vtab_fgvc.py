# VTAB-1K / FGVC classification on the frozen ViT-B/16, head-only: the
# frozen ViT without prompts, only the linear head trains (the lower
# reference of every comparison).
_base_ = ['../_base_/vtab_fgvc.py']

model = dict(backbone=dict(vit=dict(
    type='VPTViT', num_prompts=0, frozen_eval=True)))
