# BPT on ADE20K: VPT-deep (../vpt/upernet_vitb_ade20k.py: UperNet + frozen
# ViT-B/16 IN-21k, 512x512, 160k iterations, 8x2 images, AdamW, same TTA)
# with BPT's bilinear prompts in the paper's deep setting: m=50 prompts per
# layer, P_l = A_l B_l^T with rank p=50, B_l initialised from the whitening
# of the vectors that query layer l's prompts (Bilinear Prompt Tuning,
# "Attention to the Burstiness in Visual Prompt Tuning", ICCV 2025).
# PromptCalibrationHook measures those statistics on 256 training images
# before the first iteration (kept on --resume).
# Backbone trainable parameters: 12 x (50 x 50 + 768 x 50) = 490,800.
_base_ = ['../vpt/upernet_vitb_ade20k.py']

model = dict(
    backbone=dict(
        num_prompts=50,
        prompt_cfg=dict(
            _delete_=True, type='BilinearPrompts', rank=50, init='uniform')))

custom_hooks = [dict(type='PromptCalibrationHook', num_images=256)]
