# The timm family's demo with BPT: VPT-deep
# (../vpt/upernet_vittiny_dinov2_ade20k_demo.py) with 8 bilinear prompts per
# layer of rank 8, calibrated on 64 training images, as in
# ./upernet_vittiny_ade20k_demo.py.
_base_ = ['../vpt/upernet_vittiny_dinov2_ade20k_demo.py']

model = dict(
    backbone=dict(
        prompt_cfg=dict(
            _delete_=True, type='BilinearPrompts', rank=8, init='uniform')))

custom_hooks = [dict(type='PromptCalibrationHook', num_images=64)]
