# GTAV -> Cityscapes, BDD100K, Mapillary (Rein's domain generalisation),
# Mask2Former, frozen DINOv3 ViT-L/16
# (../_base_/mask2former_dinov3_vitl16_gta2city.py), with Bias tuning (BitFit):
# every bias of the frozen ViT trains with the heads; the ViT stays in eval
# mode.
_base_ = ['../_base_/mask2former_dinov3_vitl16_gta2city.py']

model = dict(backbone=dict(also_train=['bias']))
