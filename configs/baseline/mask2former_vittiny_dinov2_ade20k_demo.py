# head-only under the demo's tiny Mask2Former on the DINOv2-style ViT
# (../_base_/mask2former_vittiny_dinov2_ade20k_demo.py):
# the method as in ./upernet_vittiny_dinov2_ade20k_demo.py.
_base_ = ['../_base_/mask2former_vittiny_dinov2_ade20k_demo.py']
