# GTAV -> Cityscapes, BDD100K, Mapillary (Rein's domain generalisation),
# Mask2Former, DINOv3 ViT-L/16
# (../_base_/mask2former_dinov3_vitl16_gta2city.py)
# fine-tuned in full, the upper reference: every parameter trains, drop-path
# 0.1 on. Recipe: mmseg's Mask2Former recipe as the setting has it, with
# mmseg's backbone learning rate of 0.1x the head's (1e-5). Checkpoints hold
# every tensor.
_base_ = ['../_base_/mask2former_dinov3_vitl16_gta2city.py']

model = dict(backbone=dict(
    also_train=['all'], frozen_eval=False, vit=dict(drop_path_rate=0.1)))

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
