# the timm family's demo (tiny pretrained DINOv2-style ViT), with
# AdaptFormer (Chen et al. 2022): a bottleneck adapter parallel to every
# MLP, bottleneck 64, s = 0.1, dropout 0.1 (the paper's). Recipe: the
# setting's optimiser and schedule (the paper has no segmentation recipe).
_base_ = ['../_base_/upernet_vittiny_dinov2_ade20k_demo.py']

model = dict(backbone=dict(
    type='AdaptFormerViT', bottleneck=64, scale=0.1, dropout=0.1))
