# BPT under the domain-generalisation demo
# (../_base_/mask2former_vittiny_gta2city_demo.py):
# the method as in ./upernet_vittiny_ade20k_demo.py.
_base_ = ['../vpt/mask2former_vittiny_gta2city_demo.py']

model = dict(
    backbone=dict(
        prompt_cfg=dict(
            _delete_=True, type='BilinearPrompts', rank=8, init='uniform')))

custom_hooks = [dict(type='PromptCalibrationHook', num_images=64)]
