# GTAV -> Cityscapes, BDD100K, Mapillary (Rein's domain generalisation),
# Mask2Former, frozen DINOv3 ViT-L/16
# (../_base_/mask2former_dinov3_vitl16_gta2city.py), with LoRA: W_q, W_v +
# (alpha / r) B A in every block, r = 8, alpha = 8, no dropout (HF peft's
# defaults).
_base_ = ['../_base_/mask2former_dinov3_vitl16_gta2city.py']

model = dict(backbone=dict(
    type='LoRAViT', rank=8, alpha=8, targets=('q', 'v'), dropout=0.0))
