# the timm family's demo (tiny pretrained DINOv2-style ViT), with
# LoRA (Hu et al. 2021): W_q, W_v + (alpha / r) B A in every block, r = 8,
# alpha = 8 (HF peft's defaults), no dropout. Recipe: LoRA gives none for
# this setting; the setting's optimiser and schedule.
_base_ = ['../_base_/upernet_vittiny_dinov2_ade20k_demo.py']

model = dict(backbone=dict(
    type='LoRAViT', rank=8, alpha=8, targets=('q', 'v'), dropout=0.0))
