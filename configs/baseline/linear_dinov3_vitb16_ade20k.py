# The linear probe of DINOv3 on ADE20K (its model card: ViT-B/16 51.8 mIoU),
# as facebookresearch/dinov3 dinov3/eval/segmentation/configs/
# config-ade20k-linear-training.yaml runs it: the frozen DINOv3 ViT-B/16's
# last layer, through its final norm, BatchNorm and a 1x1 convolution
# (mmseg_cvpt.models.LinearProbeHead); AdamW lr 1e-3, betas (0.9, 0.999),
# weight decay 1e-3, linear warm-up over 1500 iterations from 1e-6 of the
# rate, then cosine to 0 at 40k iterations, 8 GPUs x 2 images, 512 crops
# (random scale 0.5 to 2, flip), sliding-window test (512 crops, stride
# 341), no TTA. The data pipeline and hooks are the ADE20K setting's
# (../_base_/upernet_vitb_ade20k.py, mmseg's ade20k.py: its photometric
# distortion as well). Weights: docs/pretrained.md.
_base_ = ['../_base_/upernet_vitb_ade20k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='VPTViT',
        num_prompts=0,
        vit=dict(
            type='TimmViT',
            model_name='vit_base_patch16_dinov3',
            checkpoint='pretrain/vit_base_patch16_dinov3.safetensors',
            img_size=512,
            dynamic_img_size=True,
            out_indices=(11, ),
            final_norm=True)),
    neck=None,
    decode_head=dict(
        _delete_=True,
        type='LinearProbeHead',
        in_channels=768,
        num_classes=150,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=None,
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-3),
    constructor='TrainableOptimWrapperConstructor')
max_iters = 40000
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500),
    dict(
        type='CosineAnnealingLR',
        eta_min=0.0,
        by_epoch=False,
        begin=1500,
        end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=5000)
default_hooks = dict(checkpoint=dict(interval=5000))
