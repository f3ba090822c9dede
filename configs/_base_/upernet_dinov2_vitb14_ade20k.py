# The ADE20K ViT-B setting (./upernet_vitb_ade20k.py: UperNet, 512x512
# crops, 160k iterations, 8 GPUs x 2 images, AdamW, the same hooks and TTA)
# on a frozen DINOv2 ViT-B/14 with 4 registers through timm's own model
# (configs/{cvpt,vpt,baseline,bpt,davpt}/upernet_dinov2_vitb14_ade20k.py
# inherit it; as it is, the frozen ViT without prompts, head-only).
#
# Patch 14 and 512 crops: 512 is not a multiple of 14. The data pipeline,
# the crops and the sliding-window test stay those of the ViT-B/16 configs
# (comparable numbers), and timm pads each input up to the next multiple of
# 14 (dynamic_img_pad: 512 -> 518, a 37 x 37 grid), which is DINOv2's own
# training resolution (img_size=518): the position embedding is used as
# trained, never interpolated at 512 crops. Other sizes (the TTA's scales)
# interpolate it (dynamic_img_size). The other option, 518 crops, changes
# the data pipeline and the comparison with the ViT-B/16 configs; Rein's
# option, resizing the patch kernel to 16, changes the pretrained weights.
#
# Features of blocks 3, 5, 7, 11 (DINOv2's own segmentation uses the last
# four; these match the MultiLevelNeck's ViT-B/16 layout), no final norm.
# Weights: the timm checkpoint of vit_base_patch14_reg4_dinov2.lvd142m (or
# the original release file dinov2_vitb14_reg4_pretrain.pth); see
# docs/pretrained.md. Override with
#   --cfg-options model.backbone.vit.checkpoint=PATH
dinov2_checkpoint = 'pretrain/vit_base_patch14_reg4_dinov2.safetensors'
_base_ = ['./upernet_vitb_ade20k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='VPTViT',
        num_prompts=0,
        vit=dict(
            type='TimmViT',
            model_name='vit_base_patch14_reg4_dinov2',
            checkpoint=dinov2_checkpoint,
            img_size=518,
            dynamic_img_size=True,
            dynamic_img_pad=True,
            out_indices=(3, 5, 7, 11),
            final_norm=False)))
