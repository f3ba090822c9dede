# The timm family's demo (../_base_/upernet_vittiny_dinov2_ade20k_demo.py:
# a tiny pretrained DINOv2-style ViT through timm) with VPT-deep: 8 prompts
# per layer after the class token and the 4 registers.
_base_ = ['../_base_/upernet_vittiny_dinov2_ade20k_demo.py']

model = dict(
    backbone=dict(
        type='VPTViT', num_prompts=8, prompt_depth='deep', prompt_dropout=0.1,
        prompt_cfg=dict(type='LayerPrompts', init='uniform')))
