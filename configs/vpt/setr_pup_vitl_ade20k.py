# VPT-deep in the papers' own ADE20K protocol: SETR-PUP with a frozen
# ViT-L/16, 200 prompts per layer inserted into the token sequence; all else
# as ../cvpt/setr_pup_vitl_ade20k.py (whose `pretrained` variable names the
# checkpoint). Reported: 42.11 / 44.06 mIoU (single / multi-scale).
_base_ = ['../cvpt/setr_pup_vitl_ade20k.py']

model = dict(
    backbone=dict(
        # restated in full: VPTViT takes no cross-attention arguments
        _delete_=True,
        type='VPTViT',
        num_prompts=200,
        prompt_depth='deep',
        prompt_dropout=0.1,
        frozen_eval=True,
        # ViT-L/16, as mmseg's SETR-PUP ADE20K config
        img_size=(512, 512),
        patch_size=16,
        patch_bias=True,
        in_channels=3,
        embed_dims=1024,
        num_layers=24,
        num_heads=16,
        out_indices=(9, 14, 19, 23),
        drop_rate=0.0,
        norm_cfg=dict(type='LN', eps=1e-6, requires_grad=True),
        with_cls_token=True,
        interpolate_mode='bilinear',
        init_cfg=dict(type='Pretrained', checkpoint={{_base_.pretrained}})))
