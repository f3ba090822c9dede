# VPT-deep on ADE20K: the CVPT setting (../cvpt/upernet_vitb_ade20k.py:
# UperNet + frozen ViT-B/16 IN-21k, 512x512, 160k iterations, 8x2 images,
# AdamW, same TTA) with 200 prompts per layer inserted into the token
# sequence (Jia et al., ECCV 2022).
# The pretrained checkpoint is the `pretrained` variable of the CVPT config.
_base_ = ['../cvpt/upernet_vitb_ade20k.py']

model = dict(
    backbone=dict(
        # restated in full: VPTViT takes no cross-attention arguments
        _delete_=True,
        type='VPTViT',
        num_prompts=200,
        prompt_depth='deep',
        prompt_dropout=0.1,
        frozen_eval=True,
        # ViT-B/16, as mmseg's _base_/models/upernet_vit-b16_ln_mln.py
        img_size=(512, 512),
        patch_size=16,
        patch_bias=True,
        in_channels=3,
        embed_dims=768,
        num_layers=12,
        num_heads=12,
        mlp_ratio=4,
        out_indices=(2, 5, 8, 11),
        qkv_bias=True,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.0,
        with_cls_token=True,
        norm_cfg=dict(type='LN', eps=1e-6),
        act_cfg=dict(type='GELU'),
        norm_eval=False,
        interpolate_mode='bicubic',
        init_cfg=dict(type='Pretrained', checkpoint={{_base_.pretrained}})))
