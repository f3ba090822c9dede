# ADE20K UperNet on the frozen ViT-B/16 (IN-21k), 512x512, 160k iterations,
# with
# Bias tuning (BitFit; VPT's "tinytl-bias"): the heads and every bias of the
# frozen ViT train (q, k, v, out, MLP, norms, patch projection); the ViT stays
# in eval mode (no dropout or drop-path). Recipe: the setting's optimiser
# and schedule (VPT's bias rows use VPT's).
_base_ = ['../_base_/upernet_vitb_ade20k.py']

model = dict(backbone=dict(also_train=['bias']))
