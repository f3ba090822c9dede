# CVPT on VTAB-1K / FGVC with a frozen DINOv2 ViT-B/14 (4 registers) through
# timm: ./vitb_vtab_fgvc.py (the shared config ../_base_/vtab_fgvc.py; P and
# lr from the task table) with DINOv2's model in place of mmseg's ViT-B/16.
# 224x224 inputs are 16 x 16 patches of 14 pixels; the position embedding
# of DINOv2's 518 resolution is interpolated to it (dynamic_img_size).
# Choose the task with --cfg-options task=NAME; weights as in
# ../_base_/upernet_dinov2_vitb14_ade20k.py
# (--cfg-options model.backbone.vit.vit.checkpoint=PATH).
_base_ = ['./vitb_vtab_fgvc.py']

model = dict(
    backbone=dict(
        vit=dict(
            _delete_=True,
            type='CVPTViT',
            num_prompts=None,
            prompt_depth='deep',
            prompt_dropout=0.1,
            ca_position=3,
            ca_weights='shared',
            frozen_eval=True,
            vit=dict(
                type='TimmViT',
                model_name='vit_base_patch14_reg4_dinov2',
                checkpoint='pretrain/vit_base_patch14_reg4_dinov2.safetensors',
                img_size=518,
                dynamic_img_size=True,
                drop_path_rate=0.1))))
