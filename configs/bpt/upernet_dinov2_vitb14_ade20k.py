# BPT on ADE20K with a frozen DINOv2 ViT-B/14: VPT-deep
# (../vpt/upernet_dinov2_vitb14_ade20k.py) with BPT's bilinear prompts as in
# ./upernet_vitb_ade20k.py: m=50 prompts per layer of rank p=50, calibrated
# on 256 training images (the statistics from the blocks' q / k
# projections).
_base_ = ['../vpt/upernet_dinov2_vitb14_ade20k.py']

model = dict(
    backbone=dict(
        num_prompts=50,
        prompt_cfg=dict(
            _delete_=True, type='BilinearPrompts', rank=50, init='uniform')))

custom_hooks = [dict(type='PromptCalibrationHook', num_images=256)]
