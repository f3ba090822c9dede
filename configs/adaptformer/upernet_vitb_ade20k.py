# ADE20K UperNet on the frozen ViT-B/16 (IN-21k), 512x512, 160k iterations,
# with
# AdaptFormer (Chen et al. 2022): a bottleneck adapter parallel to every
# MLP, bottleneck 64, s = 0.1, dropout 0.1 (the paper's). Recipe: the
# setting's optimiser and schedule (the paper has no segmentation recipe).
_base_ = ['../_base_/upernet_vitb_ade20k.py']

model = dict(backbone=dict(
    type='AdaptFormerViT', bottleneck=64, scale=0.1, dropout=0.1))
