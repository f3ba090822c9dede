# GTAV -> Cityscapes, BDD100K, Mapillary (Rein's domain generalisation),
# Mask2Former, frozen DINOv3 ViT-L/16
# (../_base_/mask2former_dinov3_vitl16_gta2city.py), with VPT-deep: 200 prompts
# per layer after the class token and the storage tokens (registers), prompt
# dropout 0.1.
_base_ = ['../_base_/mask2former_dinov3_vitl16_gta2city.py']

model = dict(
    backbone=dict(
        type='VPTViT', num_prompts=200, prompt_depth='deep',
        prompt_dropout=0.1,
        prompt_cfg=dict(type='LayerPrompts', init='uniform')))
