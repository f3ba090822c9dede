# VTAB-1K / FGVC classification on the frozen ViT-B/16, with
# AdaptFormer (Chen et al. 2022): a bottleneck adapter parallel to every
# MLP, bottleneck 64, s = 0.1, dropout 0.1 (the paper's). Recipe: the
# setting's optimiser and schedule (the paper has no segmentation recipe).
_base_ = ['../_base_/vtab_fgvc.py']

model = dict(backbone=dict(vit=dict(
    type='AdaptFormerViT', bottleneck=64, scale=0.1, dropout=0.1,
    frozen_eval=True)))
