# VPT-deep on ADE20K with a frozen DINOv2 ViT-B/14 (4 registers) through
# timm: the setting of ../_base_/upernet_dinov2_vitb14_ade20k.py with 200
# prompts per layer after the class token and the 4 registers.
_base_ = ['../_base_/upernet_dinov2_vitb14_ade20k.py']

model = dict(
    backbone=dict(
        type='VPTViT', num_prompts=200, prompt_depth='deep',
        prompt_dropout=0.1,
        prompt_cfg=dict(type='LayerPrompts', init='uniform')))
