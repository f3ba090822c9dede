# VTAB-1K / FGVC classification on the frozen ViT-B/16, with
# LoRA (Hu et al. 2021): W_q, W_v + (alpha / r) B A in every block, r = 8,
# alpha = 8 (HF peft's defaults), no dropout. Recipe: LoRA gives none for
# this setting; the setting's optimiser and schedule.
_base_ = ['../_base_/vtab_fgvc.py']

model = dict(backbone=dict(vit=dict(
    type='LoRAViT', rank=8, alpha=8, targets=('q', 'v'), dropout=0.0,
    frozen_eval=True)))
