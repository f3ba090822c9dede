# GTAV -> Cityscapes, BDD100K, Mapillary (Rein's domain generalisation),
# Mask2Former, frozen DINOv3 ViT-L/16
# (../_base_/mask2former_dinov3_vitl16_gta2city.py), with VPT+Bias: VPT-deep
# (../vpt/mask2former_dinov3_vitl16_gta2city.py) and every bias of the ViT.
_base_ = ['../vpt/mask2former_dinov3_vitl16_gta2city.py']

model = dict(backbone=dict(also_train=['bias']))
