# The ADE20K ViT-B setting every method shares (configs/{cvpt,vpt,baseline,
# bpt,davpt}/upernet_vitb_ade20k.py): UperNet + frozen ViT-B/16
# (ImageNet-21k); only what a method adds and the heads train. As it is,
# the frozen ViT without prompts (head-only). Layout of mmseg's
# vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py: MultiLevelNeck
# (scales 4, 2, 1, 0.5) on blocks (2, 5, 8, 11), UPerHead (512 channels),
# auxiliary FCNHead (loss weight 0.4), 512x512 crops, 160k iterations,
# 8 GPUs x 2 images.
#
# Train: tools/dist_train.sh configs/cvpt/upernet_vitb_ade20k.py 8
# Test:  tools/test.py CONFIG CKPT [--aug-test]  (multi-scale 0.5-1.75 + flip)

# ---------------------------------------------------------------------------
# Pretrained backbone: ViT-B/16 ImageNet-21k converted to mmseg's key layout
# by tools/model_converters/vit2mmseg.py (see docs/pretrained.md). Edit this
# line, or override it without editing with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# (a config inheriting this one must set model.backbone.init_cfg.checkpoint:
# reassigning this variable in a child config does not reach the model).
pretrained = 'pretrain/vit_base_patch16_224_in21k_mmseg.pth'
# ---------------------------------------------------------------------------

_base_ = [
    'mmseg::_base_/models/upernet_vit-b16_ln_mln.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
default_scope = 'mmseg'
custom_imports = dict(imports=['mmseg_cvpt'], allow_failed_imports=False)

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        # the frozen ViT without prompts; a method sets its type and prompts
        type='VPTViT',
        num_prompts=0,
        # timm / JAX ViT weights have a bias in the patch projection
        patch_bias=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150))

# AdamW as in mmseg's ViT-B UperNet. The constructor hands only trainable
# parameters (a method's and the heads) to the optimiser and logs one line
# about the frozen ones instead of a warning per frozen parameter.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    constructor='TrainableOptimWrapperConstructor')
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=1500,
        end=160000,
        by_epoch=False)
]

# 8 GPUs x 2 images = batch 16
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader

default_hooks = dict(
    # atomic writes: an interrupted save never leaves a truncated checkpoint
    # or an empty last_checkpoint
    checkpoint=dict(type='AtomicCheckpointHook'),
    # checkpoints hold only what was tuned; the frozen ViT is read back from
    # the pretrained checkpoint (off: default_hooks.tuned_checkpoint.
    # tuned_only=False; see docs/task_packages.md)
    tuned_checkpoint=dict(type='TunedCheckpointHook', tuned_only=True),
    # a non-finite loss or gradient is never applied and stops the run (or
    # skips up to max_skips steps first)
    non_finite=dict(type='NonFiniteCheckHook', max_skips=0),
    # RNG states in checkpoints, validation kept off the training random
    # streams: --resume continues exactly
    rng_state=dict(type='RNGStateHook'),
    # the world size in checkpoints; --resume with another one warns (the
    # effective batch and the data order change), --strict-resume refuses
    world_size_check=dict(type='WorldSizeCheckHook'),
    # load_from / resume / test checkpoints of another architecture or
    # method are an error (tools/test.py: allow_new=False)
    checkpoint_check=dict(type='CheckpointCheckHook'))
# a method's own hooks (BPT's calibration, DA-VPT's proxies) go here
custom_hooks = []
randomness = dict(seed=0)
# distributed runs: a rank whose peer does not answer for 30 minutes (longer
# than a validation or a checkpoint save takes) stops with an error
env_cfg = dict(dist_cfg=dict(timeout=1800))

# --aug-test / --tta: 6 scales (0.5-1.75, mmseg's ADE20K tta_pipeline) x 2
# flips = 12 views per image, averaged; logs how many views it merged.
tta_model = dict(type='ViewCountingSegTTAModel')
