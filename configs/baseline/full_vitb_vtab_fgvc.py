# VTAB-1K / FGVC classification on the frozen ViT-B/16, with
# full fine-tuning, the upper reference of every comparison (VPT's and
# CVPT's tables): every parameter trains, the ViT's dropout and drop-path
# (0.1, mmseg's ViT-B UperNet) on. Recipe: the setting's optimiser (mmseg's
# ViT-B UperNet AdamW) and schedule. Checkpoints hold every tensor.
_base_ = ['../_base_/vtab_fgvc.py']

model = dict(backbone=dict(vit=dict(
    type='VPTViT', num_prompts=0, also_train=['all'], frozen_eval=False)))
