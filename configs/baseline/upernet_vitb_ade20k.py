# Head-only baseline on ADE20K: the frozen ViT-B/16 without prompts, only
# the UperNet heads train. Everything else as the CVPT and VPT configs
# (../cvpt/upernet_vitb_ade20k.py), so the three are comparable.
_base_ = ['../vpt/upernet_vitb_ade20k.py']

model = dict(backbone=dict(num_prompts=0))
