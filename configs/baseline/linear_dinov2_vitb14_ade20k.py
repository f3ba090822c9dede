# The linear probe of DINOv2 on ADE20K ("lin" in DINOv2's paper; +ms with
# --aug-test: ViT-B/14 51.3 mIoU multi-scale), as DINOv2's published
# dinov2_vitb14_ade20k_linear_config.py runs it: each patch of the frozen
# ViT-B/14's (4 registers) last layer, through its final norm, beside the
# class token, BatchNorm and a 1x1 convolution (LinearProbeHead,
# with_cls_token); AdamW lr 1e-3, weight decay 1e-4, linear warm-up over
# 1500 iterations from 1e-6 of the rate, then poly (power 1) to 0 at 40k
# iterations, 8 GPUs x 2 images, 512 crops, sliding-window test (512 crops,
# stride 341). Patch 14 and 512 crops as in
# ../_base_/upernet_dinov2_vitb14_ade20k.py. DINOv2's "+ms" head (the last
# four layers concatenated) is LinearProbeHead with in_index=[0, 1, 2, 3]
# and input_transform='resize_concat' on out_indices=(8, 9, 10, 11).
_base_ = ['./linear_dinov3_vitb16_ade20k.py']

model = dict(
    backbone=dict(
        vit=dict(
            _delete_=True,
            type='TimmViT',
            model_name='vit_base_patch14_reg4_dinov2',
            checkpoint='pretrain/vit_base_patch14_reg4_dinov2.safetensors',
            img_size=518,
            dynamic_img_size=True,
            dynamic_img_pad=True,
            out_indices=(11, ),
            final_norm=True,
            output_cls_token=True)),
    decode_head=dict(in_channels=2 * 768, with_cls_token=True))

optim_wrapper = dict(optimizer=dict(weight_decay=1e-4))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=1500,
        end=40000,
        by_epoch=False)
]
