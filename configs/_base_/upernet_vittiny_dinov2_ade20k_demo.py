# The embedded demo's setting (./upernet_vittiny_ade20k_demo.py: synthetic
# ADE20K-layout scenes, 64x64 crops, 300 iterations on a CPU) on the timm
# family: a tiny DINOv2-style ViT through timm's own model (timm's
# vit_base_patch14_reg4_dinov2 at the demo's size: 4 layers of width 64, 4
# heads, 8x8 patches, 4 registers, layer scale), pretrained like the mmseg
# demo's on the synthetic source task and shipped:
#   python tools/misc/pretrain_tiny_vit.py \
#       pretrain/vit_tiny_dinov2_demo_timm.pth --style dinov2
# configs/{cvpt,vpt,baseline,bpt,davpt}/upernet_vittiny_dinov2_ade20k_demo.py
# inherit it; as it is, the frozen ViT without prompts (head-only).
_base_ = ['./upernet_vittiny_ade20k_demo.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='VPTViT',
        num_prompts=0,
        vit=dict(
            type='TimmViT',
            model_name='vit_base_patch14_reg4_dinov2',
            checkpoint='pretrain/vit_tiny_dinov2_demo_timm.pth',
            img_size=64,
            patch_size=8,
            embed_dim=64,
            depth=4,
            num_heads=4,
            dynamic_img_size=True,
            dynamic_img_pad=True,
            out_indices=(0, 1, 2, 3),
            final_norm=True)))
