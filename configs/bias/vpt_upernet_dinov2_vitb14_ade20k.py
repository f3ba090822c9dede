# ADE20K UperNet on frozen DINOv2-B/14 with registers (timm), with
# VPT+Bias: VPT-deep's prompts (configs/vpt/upernet_dinov2_vitb14_ade20k.py)
# and every bias of
# the frozen ViT train (VPT's ADE20K table has this row); the ViT stays in
# eval mode. Recipe: VPT's.
_base_ = ['../vpt/upernet_dinov2_vitb14_ade20k.py']

model = dict(backbone=dict(also_train=['bias']))
