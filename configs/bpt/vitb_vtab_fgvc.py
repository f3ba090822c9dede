# BPT on VTAB-1K / FGVC: choose the task with --cfg-options task=NAME.
# VPT-deep (../vpt/vitb_vtab_fgvc.py) with bilinear prompts, BPT's recipe
# for a supervised ViT-B (reference code, CUB): m=50 prompts per layer (the
# deep setting), rank p=25, AdamW lr 5e-3, weight decay 0.1; the paper gives
# no per-task values, so every task uses these (override on the command
# line, e.g. --cfg-options optim_wrapper.optimizer.lr=0.01). Schedule and
# data as in the shared config (../_base_/vtab_fgvc.py). The whitening is
# measured on 256 training images before training.
_base_ = ['../vpt/vitb_vtab_fgvc.py']

model = dict(
    backbone=dict(
        vit=dict(
            num_prompts=50,
            prompt_cfg=dict(type='BilinearPrompts', rank=25,
                            init='uniform'))))
optim_wrapper = dict(optimizer=dict(lr=5e-3, weight_decay=0.1))
custom_hooks = [
    dict(type='PromptCalibrationHook', num_images=256, batch_size=32)
]
