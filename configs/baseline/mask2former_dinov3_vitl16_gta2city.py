# GTAV -> Cityscapes, BDD100K, Mapillary (Rein's domain generalisation),
# Mask2Former, frozen DINOv3 ViT-L/16
# (../_base_/mask2former_dinov3_vitl16_gta2city.py), with head-only: the frozen
# ViT as it is, the neck and the head train.
_base_ = ['../_base_/mask2former_dinov3_vitl16_gta2city.py']
