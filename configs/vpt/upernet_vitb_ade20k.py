# VPT-deep on ADE20K: the ADE20K ViT-B setting
# (../_base_/upernet_vitb_ade20k.py: UperNet + frozen ViT-B/16 IN-21k,
# 512x512, 160k iterations, 8x2 images, AdamW, TTA) with 200 prompts per
# layer inserted into the token sequence (Jia et al., ECCV 2022; VPT's
# uniform prompt init), as CVPT's ../cvpt/upernet_vitb_ade20k.py has them in
# cross-attention.
_base_ = ['../_base_/upernet_vitb_ade20k.py']

model = dict(
    backbone=dict(
        type='VPTViT',
        num_prompts=200,
        prompt_depth='deep',
        prompt_dropout=0.1,
        prompt_cfg=dict(type='LayerPrompts', init='uniform')))
