# the timm family's demo (tiny pretrained DINOv2-style ViT), with
# VPT+Bias: VPT-deep's prompts
# (configs/vpt/upernet_vittiny_dinov2_ade20k_demo.py) and every bias of
# the frozen ViT train (VPT's ADE20K table has this row); the ViT stays in
# eval mode. Recipe: VPT's.
_base_ = ['../vpt/upernet_vittiny_dinov2_ade20k_demo.py']

model = dict(backbone=dict(also_train=['bias']))
