# GTAV -> Cityscapes, BDD100K, Mapillary (Rein's domain generalisation),
# Mask2Former, frozen DINOv2 ViT-L/14 with 4 registers
# (../_base_/mask2former_dinov2_vitl14_gta2city.py), with head-only: the frozen
# ViT as it is, the neck and the head train.
_base_ = ['../_base_/mask2former_dinov2_vitl14_gta2city.py']
