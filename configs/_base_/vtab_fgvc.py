# Prompt tuning of a frozen ViT-B/16 on one VTAB-1K or FGVC task (mmpretrain).
#
# Choose the task by name: --cfg-options task=dtd. Where the config is
# processed (tools/train.py, tools/test.py, tools/misc/print_config.py),
# mmseg_cvpt.datasets.resolve_task fills from the task table
# (mmseg_cvpt/datasets/tasks.py) the data root and splits, the number of
# classes and, where they are None here, the prompt count P and the lr.
#
# Reference recipe: AdamW (wd 0.05), batch 32, 100 epochs, cosine schedule
# with 10 linear warm-up epochs from 1e-6 down to 1e-5, 224x224 resize, no
# augmentation, ImageNet mean/std, drop-path 0.1 (inactive: the frozen
# encoder is kept in eval mode).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmseg_cvpt'], allow_failed_imports=False)

task = None  # one of mmseg_cvpt.datasets.TASKS, e.g. 'dtd' or 'cub'
# False: train on train800 (FGVC: train), validate and select on val200
# (FGVC: val); the test split is never read. True: train on train800val200
# (FGVC: train + val), no validation, test the final model on test.
final = False
vtab_root = 'data/vtab-1k'  # holds one folder per VTAB-1K task
fgvc_root = 'data/fgvc'  # holds CUB_200_2011, nabirds, OxfordFlower, ...
warmup_lr = 1e-6  # resolve_task sets the LinearLR start_factor from it

# model: mmseg's ViT-B/16 (ImageNet-21k) behind mmpretrain's classifier. The
# method configs replace the ViT type and add the prompt arguments.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ClsTokenViT',
        vit=dict(
            type='VisionTransformer',
            img_size=(224, 224),
            patch_size=16,
            in_channels=3,
            patch_bias=True,  # timm / JAX weights have a patch bias
            embed_dims=768,
            num_layers=12,
            num_heads=12,
            mlp_ratio=4,
            qkv_bias=True,
            drop_rate=0.,
            attn_drop_rate=0.,
            drop_path_rate=0.1,
            norm_cfg=dict(type='LN', eps=1e-6),
            act_cfg=dict(type='GELU'),
            interpolate_mode='bicubic',
            init_cfg=dict(
                type='Pretrained',
                checkpoint='pretrain/vit_base_patch16_224_in21k_mmseg.pth'))),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=None,  # from the task table
        in_channels=768,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, )))

# data: the dataset fields (type, data_root, split, num_classes) come from
# the task table.
data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(224, 224), interpolation='bicubic',
         backend='pillow'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    dataset=dict(pipeline=pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    dataset=dict(pipeline=pipeline, test_mode=True),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

# schedule: the optimiser sees the trainable parameters only (prompts and
# head); lr None = from the task table.
optim_wrapper = dict(
    constructor='mmseg.TrainableOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=None, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=None, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=10,
         end=100, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# runtime
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # atomic checkpoints and last_checkpoint
    checkpoint=dict(
        type='AtomicCheckpointHook', interval=10, max_keep_ckpts=1,
        save_best='accuracy/top1', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
    # checkpoints hold only the prompts and the head (docs/task_packages.md)
    tuned_checkpoint=dict(type='TunedCheckpointHook', tuned_only=True),
    # a non-finite loss or gradient is never applied and stops the run
    non_finite=dict(type='NonFiniteCheckHook', max_skips=0),
    # per-task results for tools/vtab_fgvc.py's table
    task_results=dict(type='TaskResultsHook'),
    # the world size in checkpoints; --resume with another one warns (the
    # effective batch and the data order change), --strict-resume refuses
    world_size_check=dict(type='WorldSizeCheckHook'),
    # load_from checkpoints of another architecture or method are an error
    checkpoint_check=dict(type='CheckpointCheckHook'))
# a method's own hooks (BPT's calibration, DA-VPT's proxies) go here
custom_hooks = []
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # a rank whose peer does not answer for 30 minutes stops with an error
    dist_cfg=dict(backend='nccl', timeout=1800))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=42, deterministic=False)
