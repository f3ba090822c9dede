# ADE20K UperNet on the frozen ViT-B/16 (IN-21k), 512x512, 160k iterations,
# with
# VPT+Bias: VPT-deep's prompts (configs/vpt/upernet_vitb_ade20k.py) and every
# bias of
# the frozen ViT train (VPT's ADE20K table has this row); the ViT stays in
# eval mode. Recipe: VPT's.
_base_ = ['../vpt/upernet_vitb_ade20k.py']

model = dict(backbone=dict(also_train=['bias']))
