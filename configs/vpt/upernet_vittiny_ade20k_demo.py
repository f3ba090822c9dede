# The embedded demo (../_base_/upernet_vittiny_ade20k_demo.py: the pretrained
# 4-layer ViT of width 64, synthetic ADE20K-layout scenes, 300 iterations on
# a CPU) with VPT-deep: 8 prompts per layer, in the fast exact form.
#   python tools/train.py configs/vpt/upernet_vittiny_ade20k_demo.py
_base_ = ['../_base_/upernet_vittiny_ade20k_demo.py']

model = dict(
    backbone=dict(
        type='VPTViT', num_prompts=8, prompt_depth='deep', prompt_dropout=0.1,
        prompt_cfg=dict(type='LayerPrompts', init='uniform')))
