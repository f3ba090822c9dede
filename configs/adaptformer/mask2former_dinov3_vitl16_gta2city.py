# GTAV -> Cityscapes, BDD100K, Mapillary (Rein's domain generalisation),
# Mask2Former, frozen DINOv3 ViT-L/16
# (../_base_/mask2former_dinov3_vitl16_gta2city.py), with AdaptFormer: a
# bottleneck adapter (64) parallel to every MLP, s = 0.1, dropout 0.1.
_base_ = ['../_base_/mask2former_dinov3_vitl16_gta2city.py']

model = dict(backbone=dict(
    type='AdaptFormerViT', bottleneck=64, scale=0.1, dropout=0.1))
