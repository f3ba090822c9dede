# Rein under the domain-generalisation demo
# (../_base_/mask2former_vittiny_gta2city_demo.py):
# the method as in ./upernet_vittiny_ade20k_demo.py.
_base_ = ['../_base_/mask2former_vittiny_gta2city_demo.py']

# Rein as published: its tokens are also Mask2Former's 100 queries (the
# queries' positional embedding and, through a linear map, their initial
# features; mmseg_cvpt.models.query_link)
model = dict(
    type='QueryLinkedEncoderDecoder',
    backbone=dict(
        type='ReinViT', num_tokens=100, rank=16, link_token_to_query=True,
        query_dims=32),
    decode_head=dict(
        type='ReinMask2FormerHead', replace_query_feat=True,
        num_queries=100))

optim_wrapper = dict(
    optimizer=dict(lr=5e-3, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'token_factors': dict(decay_mult=0.),
        'token_basis': dict(decay_mult=0.),
        'delta_scale': dict(decay_mult=0.)}))
