# The demo's tiny Mask2Former (./mask2former_vittiny_ade20k_demo.py) on the
# demo's DINOv2-style ViT through timm (4 registers, layer scale, 4 layers of
# width 64 on 8x8 patches; ./upernet_vittiny_dinov2_ade20k_demo.py). Every
# method's mask2former_vittiny_dinov2_ade20k_demo.py inherits it; as it is,
# head-only.
_base_ = ['./mask2former_vittiny_ade20k_demo.py']

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
