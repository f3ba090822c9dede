# VTAB-1K / FGVC classification on the frozen ViT-B/16, with
# Bias tuning (BitFit; VPT's "tinytl-bias"): the heads and every bias of the
# frozen ViT train (q, k, v, out, MLP, norms, patch projection); the ViT stays
# in eval mode (no dropout or drop-path). Recipe: the setting's optimiser
# and schedule (VPT's bias rows use VPT's).
_base_ = ['../_base_/vtab_fgvc.py']

model = dict(backbone=dict(vit=dict(
    also_train=['bias'], type='VPTViT', num_prompts=0, frozen_eval=True)))
