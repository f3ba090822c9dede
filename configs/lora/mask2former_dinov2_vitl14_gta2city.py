# GTAV -> Cityscapes, BDD100K, Mapillary (Rein's domain generalisation),
# Mask2Former, frozen DINOv2 ViT-L/14 with 4 registers
# (../_base_/mask2former_dinov2_vitl14_gta2city.py), with LoRA: W_q, W_v +
# (alpha / r) B A in every block, r = 8, alpha = 8, no dropout (HF peft's
# defaults).
_base_ = ['../_base_/mask2former_dinov2_vitl14_gta2city.py']

model = dict(backbone=dict(
    type='LoRAViT', rank=8, alpha=8, targets=('q', 'v'), dropout=0.0))
