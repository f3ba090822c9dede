# CVPT in the papers' own ADE20K protocol (../_base_/setr_pup_vitl_ade20k.py:
# SETR-PUP with a frozen ViT-L/16, SGD, 160k iterations, 8x2 images, slide
# inference; its `pretrained` variable names the checkpoint): 200
# cross-attention prompts per layer. Reported (ViT-L, P=200, mIoU single /
# multi-scale): 45.66 / 47.92.
_base_ = ['../_base_/setr_pup_vitl_ade20k.py']

model = dict(
    backbone=dict(
        type='CVPTViT', num_prompts=200, prompt_depth='deep',
        prompt_dropout=0.1))
