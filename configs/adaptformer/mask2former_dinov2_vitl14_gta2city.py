# GTAV -> Cityscapes, BDD100K, Mapillary (Rein's domain generalisation),
# Mask2Former, frozen DINOv2 ViT-L/14 with 4 registers
# (../_base_/mask2former_dinov2_vitl14_gta2city.py), with AdaptFormer: a
# bottleneck adapter (64) parallel to every MLP, s = 0.1, dropout 0.1.
_base_ = ['../_base_/mask2former_dinov2_vitl14_gta2city.py']

model = dict(backbone=dict(
    type='AdaptFormerViT', bottleneck=64, scale=0.1, dropout=0.1))
