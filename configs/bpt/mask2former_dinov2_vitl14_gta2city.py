# GTAV -> Cityscapes, BDD100K, Mapillary (Rein's domain generalisation),
# Mask2Former, frozen DINOv2 ViT-L/14 with 4 registers
# (../_base_/mask2former_dinov2_vitl14_gta2city.py), with BPT: VPT-deep
# (../vpt/) with BPT's bilinear prompts, m = 50 prompts per layer of rank p =
# 50, calibrated on 256 training images.
_base_ = ['../vpt/mask2former_dinov2_vitl14_gta2city.py']

model = dict(
    backbone=dict(
        num_prompts=50,
        prompt_cfg=dict(
            _delete_=True, type='BilinearPrompts', rank=50, init='uniform')))

custom_hooks = [dict(type='PromptCalibrationHook', num_images=256)]
