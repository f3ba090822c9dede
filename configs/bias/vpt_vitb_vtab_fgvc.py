# VTAB-1K / FGVC classification on the frozen ViT-B/16, with
# VPT+Bias: VPT-deep's prompts (configs/vpt/vitb_vtab_fgvc.py) and every bias
# of
# the frozen ViT train (VPT's ADE20K table has this row); the ViT stays in
# eval mode. Recipe: VPT's.
_base_ = ['../vpt/vitb_vtab_fgvc.py']

model = dict(backbone=dict(vit=dict(also_train=['bias'])))
