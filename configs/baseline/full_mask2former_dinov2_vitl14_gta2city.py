# GTAV -> Cityscapes, BDD100K, Mapillary (Rein's domain generalisation),
# Mask2Former, DINOv2 ViT-L/14 with 4 registers
# (../_base_/mask2former_dinov2_vitl14_gta2city.py)
# fine-tuned in full, the reference
# that domain generalisation measures the frozen methods against: every
# parameter trains, drop-path 0.1 on, the backbone at 0.1x the head's
# learning rate (1e-5). Checkpoints hold every tensor.
_base_ = ['../_base_/mask2former_dinov2_vitl14_gta2city.py']

model = dict(backbone=dict(
    also_train=['all'], frozen_eval=False, vit=dict(drop_path_rate=0.1)))

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
