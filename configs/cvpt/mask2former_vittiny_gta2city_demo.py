# CVPT under the domain-generalisation demo
# (../_base_/mask2former_vittiny_gta2city_demo.py):
# the method as in ./upernet_vittiny_ade20k_demo.py.
_base_ = ['../_base_/mask2former_vittiny_gta2city_demo.py']

model = dict(
    backbone=dict(
        type='CVPTViT', num_prompts=8, prompt_depth='deep',
        prompt_dropout=0.1))
