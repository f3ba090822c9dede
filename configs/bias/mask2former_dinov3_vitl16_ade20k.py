# ADE20K, Mask2Former, frozen DINOv3 ViT-L/16
# (../_base_/mask2former_dinov3_vitl16_ade20k.py), with Bias tuning (BitFit):
# every bias of the frozen ViT trains with the heads; the ViT stays in eval
# mode.
_base_ = ['../_base_/mask2former_dinov3_vitl16_ade20k.py']

model = dict(backbone=dict(also_train=['bias']))
