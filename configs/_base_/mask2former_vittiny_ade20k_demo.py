# The embedded demo (./upernet_vittiny_ade20k_demo.py: the pretrained 4-layer
# ViT of width 64, synthetic ADE20K-layout scenes, 300 iterations on a CPU)
# under a tiny Mask2Former (mmseg's Mask2FormerHead, mmdet's pixel decoder
# and transformer decoder) instead of UperNet: the demo's share of
# ./mask2former_dinov3_vitl16_ade20k.py, shrunk as the demo shrinks the
# UperNet setting (32 channels, 10 queries, one deformable encoder layer, two
# decoder layers, 256 sampled points per mask). The feature pyramid is the
# UperNet setting's: mmseg's MultiLevelNeck turns the ViT's four stride-8
# maps into strides 2, 4, 8 and 16 (scales 4, 2, 1, 0.5). Every method's
# mask2former_vittiny_ade20k_demo.py inherits it; as it is, head-only.
# Recipe: Mask2Former's (AdamW, weight decay 0.05, gradient clipping, no
# decay on the query and level embeddings) at the demo's learning rate.
#   python tools/train.py configs/baseline/mask2former_vittiny_ade20k_demo.py
_base_ = ['./upernet_vittiny_ade20k_demo.py']

num_classes = 6
channels = 32
model = dict(
    neck=dict(out_channels=channels),
    decode_head=dict(
        _delete_=True,
        type='Mask2FormerHead',
        in_channels=[channels] * 4,
        strides=[4, 8, 16, 32],
        feat_channels=channels,
        out_channels=channels,
        num_classes=num_classes,
        num_queries=10,
        num_transformer_feat_level=3,
        align_corners=False,
        pixel_decoder=dict(
            type='mmdet.MSDeformAttnPixelDecoder',
            num_outs=3,
            norm_cfg=dict(type='GN', num_groups=8),
            act_cfg=dict(type='ReLU'),
            encoder=dict(
                num_layers=1,
                layer_cfg=dict(
                    self_attn_cfg=dict(
                        embed_dims=channels,
                        num_heads=4,
                        num_levels=3,
                        num_points=4,
                        im2col_step=64,
                        dropout=0.0,
                        batch_first=True,
                        norm_cfg=None,
                        init_cfg=None),
                    ffn_cfg=dict(
                        embed_dims=channels,
                        feedforward_channels=2 * channels,
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
            num_layers=2,
            layer_cfg=dict(
                self_attn_cfg=dict(
                    embed_dims=channels,
                    num_heads=4,
                    attn_drop=0.0,
                    proj_drop=0.0,
                    dropout_layer=None,
                    batch_first=True),
                cross_attn_cfg=dict(
                    embed_dims=channels,
                    num_heads=4,
                    attn_drop=0.0,
                    proj_drop=0.0,
                    dropout_layer=None,
                    batch_first=True),
                ffn_cfg=dict(
                    embed_dims=channels,
                    feedforward_channels=2 * channels,
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
            num_points=256,
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
    clip_grad=dict(max_norm=0.01, norm_type=2),
    optimizer=dict(weight_decay=0.05, eps=1e-8),
    paramwise_cfg=dict(
        custom_keys={
            'query_embed': dict(decay_mult=0.),
            'query_feat': dict(decay_mult=0.),
            'level_embed': dict(decay_mult=0.)},
        norm_decay_mult=0.))
