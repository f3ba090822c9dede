# the timm family's demo (tiny pretrained DINOv2-style ViT), with
# Bias tuning (BitFit; VPT's "tinytl-bias"): the heads and every bias of the
# frozen ViT train (q, k, v, out, MLP, norms, patch projection); the ViT stays
# in eval mode (no dropout or drop-path). Recipe: the setting's optimiser
# and schedule (VPT's bias rows use VPT's).
_base_ = ['../_base_/upernet_vittiny_dinov2_ade20k_demo.py']

model = dict(backbone=dict(also_train=['bias']))
