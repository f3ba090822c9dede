# ADE20K (150 classes, 512x512 crops) with Mask2Former on a frozen DINOv3
# ViT-L/16 through timm's own model (the setting of every method's
# mask2former_dinov3_vitl16_ade20k.py; as it is, the frozen ViT, head-only).
#
# Head and recipe: mmseg's Mask2Former ADE20K recipe
# (mmseg configs/mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py:
# 100 queries, 6 deformable encoder and 9 decoder layers of width 256,
# AdamW lr 1e-4, weight decay 0.05, gradient clipping at 0.01, no decay on
# the query / level embeddings and norms, poly, 160k iterations, 8 GPUs x 2
# images). mmseg has no ViT Mask2Former config; here the backbone's own
# parameters (a method's) train at the head's rate, as in Rein's
# Mask2Former configs, and only full fine-tuning takes mmseg's backbone
# rate of 0.1x. The data pipeline, the crops and the TTA are those of the
# UperNet settings (./upernet_vitb_ade20k.py), so the heads compare.
#
# Feature pyramid: the ViT's blocks 7, 11, 15, 23 (Rein's choice for
# ViT-L), each at stride 16, through mmseg's MultiLevelNeck (resize by
# 4, 2, 1, 0.5 and a 3x3 convolution to 256 channels): the neck of the
# UperNet ViT settings, so that only the head changes between them.
#
# Weights: vit_large_patch16_dinov3.lvd1689m through timm, or Meta's
# dinov3_vitl16_pretrain_lvd1689m-*.pth as released (DINOv3 License; see
# docs/pretrained.md). Override with
#   --cfg-options model.backbone.vit.checkpoint=PATH
dinov3_checkpoint = 'pretrain/vit_large_patch16_dinov3.safetensors'
_base_ = ['./upernet_vitb_ade20k.py']

num_classes = 150
channels = 256
model = dict(
    backbone=dict(
        _delete_=True,
        type='VPTViT',
        num_prompts=0,
        vit=dict(
            type='TimmViT',
            model_name='vit_large_patch16_dinov3',
            checkpoint=dinov3_checkpoint,
            img_size=512,
            dynamic_img_size=True,
            out_indices=(7, 11, 15, 23),
            final_norm=False)),
    neck=dict(in_channels=[1024] * 4, out_channels=channels),
    decode_head=dict(
        _delete_=True,
        type='Mask2FormerHead',
        in_channels=[channels] * 4,
        strides=[4, 8, 16, 32],
        feat_channels=channels,
        out_channels=channels,
        num_classes=num_classes,
        num_queries=100,
        num_transformer_feat_level=3,
        align_corners=False,
        pixel_decoder=dict(
            type='mmdet.MSDeformAttnPixelDecoder',
            num_outs=3,
            norm_cfg=dict(type='GN', num_groups=32),
            act_cfg=dict(type='ReLU'),
            encoder=dict(
                num_layers=6,
                layer_cfg=dict(
                    self_attn_cfg=dict(
                        embed_dims=channels,
                        num_heads=8,
                        num_levels=3,
                        num_points=4,
                        im2col_step=64,
                        dropout=0.0,
                        batch_first=True,
                        norm_cfg=None,
                        init_cfg=None),
                    ffn_cfg=dict(
                        embed_dims=channels,
                        feedforward_channels=4 * channels,
                        num_fcs=2,
                        ffn_drop=0.0,
                        act_cfg=dict(type='ReLU', inplace=True))),
                init_cfg=None),
            positional_encoding=dict(num_feats=channels // 2, normalize=True),
            init_cfg=None),
        enforce_decoder_input_project=False,
        positional_encoding=dict(num_feats=channels // 2, normalize=True),
        transformer_decoder=dict(
            return_intermediate=True,
            num_layers=9,
            layer_cfg=dict(
                self_attn_cfg=dict(
                    embed_dims=channels,
                    num_heads=8,
                    attn_drop=0.0,
                    proj_drop=0.0,
                    dropout_layer=None,
                    batch_first=True),
                cross_attn_cfg=dict(
                    embed_dims=channels,
                    num_heads=8,
                    attn_drop=0.0,
                    proj_drop=0.0,
                    dropout_layer=None,
                    batch_first=True),
                ffn_cfg=dict(
                    embed_dims=channels,
                    feedforward_channels=8 * channels,
                    num_fcs=2,
                    act_cfg=dict(type='ReLU', inplace=True),
                    ffn_drop=0.0,
                    dropout_layer=None,
                    add_identity=True)),
            init_cfg=None),
        loss_cls=dict(
            type='mmdet.CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=2.0,
            reduction='mean',
            class_weight=[1.0] * num_classes + [0.1]),
        loss_mask=dict(
            type='mmdet.CrossEntropyLoss',
            use_sigmoid=True,
            reduction='mean',
            loss_weight=5.0),
        loss_dice=dict(
            type='mmdet.DiceLoss',
            use_sigmoid=True,
            activate=True,
            reduction='mean',
            naive_dice=True,
            eps=1.0,
            loss_weight=5.0),
        train_cfg=dict(
            num_points=12544,
            oversample_ratio=3.0,
            importance_sample_ratio=0.75,
            assigner=dict(
                type='mmdet.HungarianAssigner',
                match_costs=[
                    dict(type='mmdet.ClassificationCost', weight=2.0),
                    dict(
                        type='mmdet.CrossEntropyLossCost',
                        weight=5.0,
                        use_sigmoid=True),
                    dict(
                        type='mmdet.DiceCost',
                        weight=5.0,
                        pred_act=True,
                        eps=1.0)
                ]),
            sampler=dict(type='mmdet.MaskPseudoSampler'))),
    auxiliary_head=None)

optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05, eps=1e-8),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={
            'query_embed': dict(decay_mult=0.),
            'query_feat': dict(decay_mult=0.),
            'level_embed': dict(decay_mult=0.)},
        norm_decay_mult=0.))
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=0,
        power=0.9,
        begin=0,
        end=160000,
        by_epoch=False)
]
