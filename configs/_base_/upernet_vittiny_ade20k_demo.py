# The embedded demo's setting, which every method's demo config shares
# (configs/{cvpt,vpt,baseline,bpt,davpt}/upernet_vittiny_ade20k_demo.py):
# the ADE20K ViT-B setting (./upernet_vitb_ade20k.py) shrunk to run in a few
# minutes on a 2-core CPU. Only the model size, the data and the schedule
# change (the learning rate with the schedule: 3e-3 for 300 iterations, 50x
# the setting's 6e-5 for 160k; a method config with its own recipe's rate
# scales it alike); the optimiser, the hooks and the TTA are the real
# setting's. As it is, the frozen ViT without prompts (head-only).
# The data are the synthetic ADE20K-layout scenes of
#   python tools/misc/make_ade20k_demo.py data/ade20k_demo
# (6 classes: the first six of ADE20K, told apart by colour under random
# camouflaging textures). The frozen ViT is pretrained like the real one, on
# another task (24 classes of synthetic textures in random colours, partly
# covered by shapes: its features track the textures, not the colours):
# pretrain/vit_tiny_demo_mmseg.pth, which the repository ships and
#   python tools/misc/pretrain_tiny_vit.py pretrain/vit_tiny_demo_mmseg.pth
# regenerates bit-exactly. Checkpoints hold only what was tuned (see
# TunedCheckpointHook in ./upernet_vitb_ade20k.py).
_base_ = ['./upernet_vitb_ade20k.py']

# ---- model: ViT with 4 layers of width 64 on 8x8 patches of 64x64 crops,
# heads with 32 channels ----
embed_dims = 64
crop_size = (64, 64)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        img_size=crop_size,
        patch_size=8,
        embed_dims=embed_dims,
        num_layers=4,
        num_heads=4,
        out_indices=(0, 1, 2, 3),
        # the pretrained ViT's final LayerNorm (timm's `norm`) on the last
        # block's output: every weight of the checkpoint is used
        final_norm=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='pretrain/vit_tiny_demo_mmseg.pth')),
    neck=dict(in_channels=[embed_dims] * 4, out_channels=32),
    decode_head=dict(
        in_channels=[32] * 4, channels=32, num_classes=6),
    auxiliary_head=dict(in_channels=32, channels=16, num_classes=6))

# ---- data: 64x64 synthetic scenes, 6 classes ----
data_root = 'data/ade20k_demo'
metainfo = dict(
    classes=('wall', 'building', 'sky', 'floor', 'tree', 'ceiling'),
    palette=[[120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50],
             [4, 200, 3], [120, 120, 80]])
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize',
        scale=(256, 64),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 64), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader

# ---- schedule: iteration-based, evaluated and saved at the end ----
max_iters = 300
optim_wrapper = dict(optimizer=dict(lr=0.003))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=30,
        end=max_iters,
        by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=max_iters),
    visualization=dict(draw=False))
# a CPU-sized wait for distributed peers (see upernet_vitb_ade20k.py)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(timeout=300))
