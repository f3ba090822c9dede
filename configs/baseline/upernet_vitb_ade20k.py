# Head-only baseline on ADE20K: the frozen ViT-B/16 without prompts, only
# the UperNet heads train; the shared setting as it is
# (../_base_/upernet_vitb_ade20k.py), so it compares with the CVPT and VPT
# configs.
_base_ = ['../_base_/upernet_vitb_ade20k.py']
