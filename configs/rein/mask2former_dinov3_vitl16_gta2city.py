# GTAV -> Cityscapes, BDD100K, Mapillary (Rein's domain generalisation),
# Mask2Former, frozen DINOv3 ViT-L/16
# (../_base_/mask2former_dinov3_vitl16_gta2city.py), with Rein: 100 tokens of
# rank 16 refine every block's patch features; Rein's optimiser (AdamW lr
# 1e-4, weight decay 0.05, none on the tokens and the scale).
_base_ = ['../_base_/mask2former_dinov3_vitl16_gta2city.py']

# Rein as published: its tokens are also Mask2Former's 100 queries (the
# queries' positional embedding and, through a linear map, their initial
# features; mmseg_cvpt.models.query_link): 2,990,081 trainable parameters
# in the backbone, Rein's 2.99 M
model = dict(
    type='QueryLinkedEncoderDecoder',
    backbone=dict(
        type='ReinViT', num_tokens=100, rank=16, link_token_to_query=True,
        query_dims=256),
    decode_head=dict(type='ReinMask2FormerHead', replace_query_feat=True))

optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'token_factors': dict(decay_mult=0.),
        'token_basis': dict(decay_mult=0.),
        'delta_scale': dict(decay_mult=0.)}))
