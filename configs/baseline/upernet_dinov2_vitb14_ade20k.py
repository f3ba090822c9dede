# Head-only on ADE20K with a frozen DINOv2 ViT-B/14 (4 registers) through
# timm: the setting of ../_base_/upernet_dinov2_vitb14_ade20k.py as it is.
_base_ = ['../_base_/upernet_dinov2_vitb14_ade20k.py']
