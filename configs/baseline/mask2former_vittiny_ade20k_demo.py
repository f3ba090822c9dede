# Head-only under the demo's tiny Mask2Former
# (../_base_/mask2former_vittiny_ade20k_demo.py) as it is.
_base_ = ['../_base_/mask2former_vittiny_ade20k_demo.py']
