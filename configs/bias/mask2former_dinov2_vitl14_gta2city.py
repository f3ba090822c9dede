# GTAV -> Cityscapes, BDD100K, Mapillary (Rein's domain generalisation),
# Mask2Former, frozen DINOv2 ViT-L/14 with 4 registers
# (../_base_/mask2former_dinov2_vitl14_gta2city.py), with Bias tuning (BitFit):
# every bias of the frozen ViT trains with the heads; the ViT stays in eval
# mode.
_base_ = ['../_base_/mask2former_dinov2_vitl14_gta2city.py']

model = dict(backbone=dict(also_train=['bias']))
