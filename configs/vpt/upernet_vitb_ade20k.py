# VPT-deep on ADE20K: the CVPT setting (../cvpt/upernet_vitb_ade20k.py:
# UperNet + frozen ViT-B/16 IN-21k, 512x512, 160k iterations, 8x2 images,
# AdamW, same TTA) with its 200 prompts per layer inserted into the token
# sequence instead (Jia et al., ECCV 2022; VPT's uniform prompt init).
# The pretrained checkpoint is the `pretrained` variable of the CVPT config.
_base_ = ['../cvpt/upernet_vitb_ade20k.py']

model = dict(
    backbone=dict(
        type='VPTViT', prompt_cfg=dict(type='LayerPrompts', init='uniform')))
