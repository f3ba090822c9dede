# the embedded demo (tiny pretrained ViT, synthetic ADE20K-layout scenes), with
# full fine-tuning, the upper reference of every comparison (VPT's and
# CVPT's tables): every parameter trains, the ViT's dropout and drop-path
# (0.1, mmseg's ViT-B UperNet) on. Recipe: the setting's optimiser (mmseg's
# ViT-B UperNet AdamW) and schedule. Checkpoints hold every tensor.
_base_ = ['../_base_/upernet_vittiny_ade20k_demo.py']

model = dict(backbone=dict(
    also_train=['all'], frozen_eval=False, drop_path_rate=0.1))
