# GTAV -> Cityscapes, BDD100K, Mapillary (Rein's domain generalisation),
# Mask2Former, frozen DINOv2 ViT-L/14 with 4 registers
# (../_base_/mask2former_dinov2_vitl14_gta2city.py), with CVPT: 200
# cross-attention prompts per layer (position 3, the blocks' shared frozen
# weights, prompt dropout 0.1), through each block's layer scale; 24 x 200 x
# 1024 = 4,915,200 prompt parameters.
_base_ = ['../_base_/mask2former_dinov2_vitl14_gta2city.py']

model = dict(
    backbone=dict(
        type='CVPTViT', num_prompts=200, prompt_depth='deep',
        prompt_dropout=0.1))
