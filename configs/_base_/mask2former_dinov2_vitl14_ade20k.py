# The ADE20K Mask2Former setting of ./mask2former_dinov3_vitl16_ade20k.py
# (head, recipe, data, neck and feature layers) on a frozen DINOv2 ViT-L/14
# with 4 registers through timm, the backbone of Rein and its successors.
# Patch 14 and 512 crops as in ./upernet_dinov2_vitb14_ade20k.py: timm pads
# each input to the next multiple of 14 (512 -> 518, DINOv2's training
# resolution, a 37 x 37 grid). Every method's
# mask2former_dinov2_vitl14_ade20k.py inherits it; as it is, head-only.
# Weights: vit_large_patch14_reg4_dinov2.lvd142m through timm, or DINOv2's
# dinov2_vitl14_reg4_pretrain.pth (see docs/pretrained.md).
dinov2_checkpoint = 'pretrain/vit_large_patch14_reg4_dinov2.safetensors'
_base_ = ['./mask2former_dinov3_vitl16_ade20k.py']

model = dict(
    backbone=dict(
        vit=dict(
            _delete_=True,
            type='TimmViT',
            model_name='vit_large_patch14_reg4_dinov2',
            checkpoint=dinov2_checkpoint,
            img_size=518,
            dynamic_img_size=True,
            dynamic_img_pad=True,
            out_indices=(7, 11, 15, 23),
            final_norm=False)))
