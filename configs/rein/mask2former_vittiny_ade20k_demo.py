# Rein under the demo's tiny Mask2Former
# (../_base_/mask2former_vittiny_ade20k_demo.py):
# the method as in ./upernet_vittiny_ade20k_demo.py.
_base_ = ['../_base_/mask2former_vittiny_ade20k_demo.py']

model = dict(backbone=dict(type='ReinViT', num_tokens=100, rank=16))

optim_wrapper = dict(
    optimizer=dict(lr=5e-3, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'token_factors': dict(decay_mult=0.),
        'token_basis': dict(decay_mult=0.),
        'delta_scale': dict(decay_mult=0.)}))
