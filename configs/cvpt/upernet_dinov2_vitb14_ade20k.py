# CVPT on ADE20K with a frozen DINOv2 ViT-B/14 (4 registers) through timm:
# the setting of ../_base_/upernet_dinov2_vitb14_ade20k.py (patch 14 and
# 512 crops explained there) with 200 cross-attention prompts per layer,
# through each block's layer scale.
_base_ = ['../_base_/upernet_dinov2_vitb14_ade20k.py']

model = dict(
    backbone=dict(
        type='CVPTViT', num_prompts=200, prompt_depth='deep',
        prompt_dropout=0.1))
