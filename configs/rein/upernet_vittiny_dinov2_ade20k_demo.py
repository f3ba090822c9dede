# the timm family's demo (tiny pretrained DINOv2-style ViT), with
# Rein (Wei et al. 2024): 100 tokens of rank 16 refine every block's patch
# features. Recipe: Rein's optimiser (AdamW lr 1e-4, weight decay 0.05, none
# on the tokens and the scale); the setting's schedule (Rein trains 40k
# iterations with Mask2Former; UperNet here, so that the methods share one).
_base_ = ['../_base_/upernet_vittiny_dinov2_ade20k_demo.py']

model = dict(backbone=dict(type='ReinViT', num_tokens=100, rank=16))

optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'token_factors': dict(decay_mult=0.),
        'token_basis': dict(decay_mult=0.),
        'delta_scale': dict(decay_mult=0.)}))
