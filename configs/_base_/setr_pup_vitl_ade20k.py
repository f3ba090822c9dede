# The papers' own ADE20K protocol (VPT, CVPT, DA-VPT), which the method
# configs configs/{cvpt,vpt}/setr_pup_vitl_ade20k.py share: SETR-PUP with a
# frozen ViT-L/16 (features of blocks 9, 14, 19, 23; 3 auxiliary heads), SGD
# lr 1e-3 with heads at 10x, 160k iterations, 8 GPUs x 2 images, slide
# inference. mmseg's setr_vit-l_pup_8xb2-160k_ade20k-512x512.py with the
# frozen (prompted) backbone; as it is, the frozen ViT without prompts.
# Reported (ViT-L, P=200, mIoU single / multi-scale): CVPT 45.66 / 47.92,
# VPT-deep 42.11 / 44.06.

# ---------------------------------------------------------------------------
# Pretrained backbone: ViT-L/16 ImageNet-21k converted to mmseg's key layout
# by tools/model_converters/vit2mmseg.py (see docs/pretrained.md). Edit this
# line or pass --cfg-options model.backbone.init_cfg.checkpoint=PATH.
pretrained = 'pretrain/vit_large_patch16_224_in21k_mmseg.pth'
# ---------------------------------------------------------------------------

_base_ = ['mmseg::setr/setr_vit-l_pup_8xb2-160k_ade20k-512x512.py']
default_scope = 'mmseg'
custom_imports = dict(imports=['mmseg_cvpt'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        # the frozen ViT without prompts; a method sets its type and prompts
        type='VPTViT',
        num_prompts=0,
        # timm / JAX ViT weights have a bias in the patch projection
        patch_bias=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))

# mmseg's SGD (momentum 0.9, no weight decay, lr 1e-3, heads x10) over the
# trainable parameters only
optim_wrapper = dict(constructor='TrainableOptimWrapperConstructor')

# as in upernet_vitb_ade20k.py: atomic checkpoints holding only what was
# tuned, no non-finite step, exact --resume (the world size checked),
# strict checkpoint loading, a bounded wait for distributed peers
default_hooks = dict(
    checkpoint=dict(type='AtomicCheckpointHook'),
    tuned_checkpoint=dict(type='TunedCheckpointHook', tuned_only=True),
    non_finite=dict(type='NonFiniteCheckHook', max_skips=0),
    rng_state=dict(type='RNGStateHook'),
    world_size_check=dict(type='WorldSizeCheckHook'),
    checkpoint_check=dict(type='CheckpointCheckHook'))
randomness = dict(seed=0)
env_cfg = dict(dist_cfg=dict(timeout=1800))
tta_model = dict(type='ViewCountingSegTTAModel')
