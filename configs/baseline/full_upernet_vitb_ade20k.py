# ADE20K UperNet on the frozen ViT-B/16 (IN-21k), 512x512, 160k iterations,
# with
# full fine-tuning, the upper reference of every comparison (VPT's and
# CVPT's tables): every parameter trains, the ViT's dropout and drop-path
# (0.1, mmseg's ViT-B UperNet) on. Recipe: the setting's optimiser (mmseg's
# ViT-B UperNet AdamW) and schedule. Checkpoints hold every tensor.
_base_ = ['../_base_/upernet_vitb_ade20k.py']

model = dict(backbone=dict(
    also_train=['all'], frozen_eval=False, drop_path_rate=0.1))
