# ADE20K, Mask2Former, frozen DINOv2 ViT-L/14 with 4 registers
# (../_base_/mask2former_dinov2_vitl14_ade20k.py), with Bias tuning (BitFit):
# every bias of the frozen ViT trains with the heads; the ViT stays in eval
# mode.
_base_ = ['../_base_/mask2former_dinov2_vitl14_ade20k.py']

model = dict(backbone=dict(also_train=['bias']))
