# The timm family's demo (../_base_/upernet_vittiny_dinov2_ade20k_demo.py)
# head-only: the frozen tiny DINOv2-style ViT without prompts.
_base_ = ['../_base_/upernet_vittiny_dinov2_ade20k_demo.py']
