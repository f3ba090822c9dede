# VPT+Bias under the domain-generalisation demo
# (../_base_/mask2former_vittiny_gta2city_demo.py):
# the method as in ./upernet_vittiny_ade20k_demo.py.
_base_ = ['../vpt/mask2former_vittiny_gta2city_demo.py']

model = dict(backbone=dict(also_train=['bias']))
