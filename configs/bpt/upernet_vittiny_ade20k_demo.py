# The embedded demo (../_base_/upernet_vittiny_ade20k_demo.py: 4-layer ViT of
# width 64, synthetic ADE20K-layout scenes, 300 iterations on a CPU) with
# BPT: VPT-deep with 8 bilinear prompts per layer of rank 8, calibrated on
# 64 training images before training.
#   python tools/train.py configs/bpt/upernet_vittiny_ade20k_demo.py
_base_ = ['../vpt/upernet_vittiny_ade20k_demo.py']

model = dict(
    backbone=dict(
        prompt_cfg=dict(
            _delete_=True, type='BilinearPrompts', rank=8, init='uniform')))

custom_hooks = [dict(type='PromptCalibrationHook', num_images=64)]
