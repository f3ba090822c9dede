# The embedded demo (../_base_/upernet_vittiny_ade20k_demo.py: the pretrained
# 4-layer ViT of width 64, synthetic ADE20K-layout scenes, 300 iterations on
# a CPU) with CVPT as in ./upernet_vitb_ade20k.py (cross-attention at
# position 3, shared frozen weights, prompt dropout): 8 prompts per layer.
# bash tools/quickstart.sh runs it end to end.
_base_ = ['../_base_/upernet_vittiny_ade20k_demo.py']

model = dict(
    backbone=dict(
        type='CVPTViT', num_prompts=8, prompt_depth='deep',
        prompt_dropout=0.1))
