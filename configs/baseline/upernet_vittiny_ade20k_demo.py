# The embedded demo (../_base_/upernet_vittiny_ade20k_demo.py: the pretrained
# 4-layer ViT of width 64, synthetic ADE20K-layout scenes, 300 iterations on
# a CPU) head-only: the frozen ViT without prompts, only the heads train.
#   python tools/train.py configs/baseline/upernet_vittiny_ade20k_demo.py
_base_ = ['../_base_/upernet_vittiny_ade20k_demo.py']
