# Rein's domain-generalisation setting of
# ./mask2former_dinov3_vitl16_gta2city.py (GTAV -> Cityscapes, BDD100K,
# Mapillary; head, recipe, data) on the backbone Rein and its successors
# report: a frozen DINOv2 ViT-L/14 with 4 registers through timm, as
# ./mask2former_dinov2_vitl14_ade20k.py builds it (512 crops padded to 518).
# Every method's mask2former_dinov2_vitl14_gta2city.py inherits it; as it
# is, head-only. Published (Rein, CVPR 2024, DINOv2-L, mIoU Cityscapes /
# BDD100K / Mapillary): frozen 63.3 / 56.1 / 63.9, Rein 66.4 / 60.4 / 66.1
# (mean 64.3).
dinov2_checkpoint = 'pretrain/vit_large_patch14_reg4_dinov2.safetensors'
_base_ = ['./mask2former_dinov3_vitl16_gta2city.py']

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
