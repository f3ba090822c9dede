# Head-only under the domain-generalisation demo
# (../_base_/mask2former_vittiny_gta2city_demo.py) as it is.
_base_ = ['../_base_/mask2former_vittiny_gta2city_demo.py']
