# ADE20K, Mask2Former, frozen DINOv3 ViT-L/16
# (../_base_/mask2former_dinov3_vitl16_ade20k.py), with Rein: 100 tokens of
# rank 16 refine every block's patch features; Rein's optimiser (AdamW lr
# 1e-4, weight decay 0.05, none on the tokens and the scale).
_base_ = ['../_base_/mask2former_dinov3_vitl16_ade20k.py']

model = dict(backbone=dict(type='ReinViT', num_tokens=100, rank=16))

optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'token_factors': dict(decay_mult=0.),
        'token_basis': dict(decay_mult=0.),
        'delta_scale': dict(decay_mult=0.)}))
