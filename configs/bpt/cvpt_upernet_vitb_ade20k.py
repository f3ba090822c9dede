# CVPT + BPT on ADE20K: CVPT at P=200 (../cvpt/upernet_vitb_ade20k.py) with
# bilinear prompts P_l = A_l B_l^T of rank p=50 (BPT's deep rank), B_l
# initialised from the whitening of the cross-attention's queries at
# position 3, x + SA(LN1(x)). CVPT's prompts enter the key projection
# directly, so BPT's whitening argument holds exactly here.
# Backbone trainable parameters: 12 x (200 x 50 + 768 x 50) = 580,800
# (CVPT alone: 1,843,200).
_base_ = ['../cvpt/upernet_vitb_ade20k.py']

model = dict(
    backbone=dict(
        prompt_cfg=dict(type='BilinearPrompts', rank=50, init='xavier')))

custom_hooks = [dict(type='PromptCalibrationHook', num_images=256)]
