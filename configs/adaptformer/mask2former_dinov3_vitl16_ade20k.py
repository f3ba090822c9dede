# ADE20K, Mask2Former, frozen DINOv3 ViT-L/16
# (../_base_/mask2former_dinov3_vitl16_ade20k.py), with AdaptFormer: a
# bottleneck adapter (64) parallel to every MLP, s = 0.1, dropout 0.1.
_base_ = ['../_base_/mask2former_dinov3_vitl16_ade20k.py']

model = dict(backbone=dict(
    type='AdaptFormerViT', bottleneck=64, scale=0.1, dropout=0.1))
