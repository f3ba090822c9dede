# VPT-deep on VTAB-1K / FGVC with a frozen DINOv2 ViT-B/14 (4 registers)
# through timm: ./vitb_vtab_fgvc.py with DINOv2's model (as in the CVPT twin,
# ../cvpt/dinov2_vitb14_vtab_fgvc.py), the prompts inserted after the class
# token and the registers.
_base_ = ['../cvpt/dinov2_vitb14_vtab_fgvc.py']

model = dict(
    backbone=dict(
        vit=dict(
            _delete_=True,
            type='VPTViT',
            num_prompts=None,
            prompt_depth='deep',
            prompt_dropout=0.1,
            frozen_eval=True,
            prompt_cfg=dict(type='LayerPrompts', init='uniform'),
            vit={{_base_.model.backbone.vit.vit}})))
