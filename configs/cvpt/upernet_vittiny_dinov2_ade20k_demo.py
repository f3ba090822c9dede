# The timm family's demo (../_base_/upernet_vittiny_dinov2_ade20k_demo.py:
# a tiny pretrained DINOv2-style ViT through timm) with CVPT: 8 prompts per
# layer, cross-attention through each block's layer scale.
#   python tools/train.py configs/cvpt/upernet_vittiny_dinov2_ade20k_demo.py
_base_ = ['../_base_/upernet_vittiny_dinov2_ade20k_demo.py']

model = dict(
    backbone=dict(
        type='CVPTViT', num_prompts=8, prompt_depth='deep',
        prompt_dropout=0.1))
