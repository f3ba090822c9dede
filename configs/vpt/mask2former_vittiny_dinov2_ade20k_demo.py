# VPT-deep under the demo's tiny Mask2Former on the DINOv2-style ViT
# (../_base_/mask2former_vittiny_dinov2_ade20k_demo.py):
# the method as in ./upernet_vittiny_dinov2_ade20k_demo.py.
_base_ = ['../_base_/mask2former_vittiny_dinov2_ade20k_demo.py']

model = dict(
    backbone=dict(
        type='VPTViT', num_prompts=8, prompt_depth='deep', prompt_dropout=0.1,
        prompt_cfg=dict(type='LayerPrompts', init='uniform')))
