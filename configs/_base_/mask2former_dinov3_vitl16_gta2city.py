# Domain-generalised segmentation, Rein's protocol (Rein, CVPR 2024): train
# on the synthetic GTAV (24,966 images, Cityscapes' 19 classes), test on the
# real Cityscapes val, BDD100K val (10k set) and Mapillary Vistas v1.2 val
# (mapped to the 19 classes, halved), one mIoU per target and their mean,
# in one test (MultiTargetDataset, MultiTargetIoUMetric). Mask2Former on a
# frozen DINOv3 ViT-L/16: the head and feature pyramid of
# ./mask2former_dinov3_vitl16_ade20k.py with 19 classes. Every method's
# mask2former_dinov3_vitl16_gta2city.py inherits it; as it is, head-only.
#
# Recipe and data: Rein's configs/dinov2/rein_dinov2_mask2former_512x512_
# bs1x4.py and configs/_base_/datasets/dg_gta_512x512.py: 512x512 crops of
# shortest-edge random resizes (256-1024) of GTAV, flip, photometric
# distortion; AdamW lr 1e-4, weight decay 0.05, poly (power 0.9), 40k
# iterations, 1 GPU x 4 images; tested single-scale with 512 windows at
# stride 341, Cityscapes and Mapillary resized to 1024x512, BDD100K to
# 1280x720.
#
# Data (see README, "Domain-generalised segmentation"): data/gta (images/,
# labels/ after tools/dataset_converters/gta.py), data/cityscapes
# (leftImg8bit/, gtFine/ *_gtFine_labelTrainIds.png), data/bdd100k
# (images/10k/val, labels/sem_seg/masks/val), data/mapillary (half/ after
# tools/dataset_converters/mapillary2cityscapes.py --resize).
_base_ = ['./mask2former_dinov3_vitl16_ade20k.py']

num_classes = 19
crop_size = (512, 512)
model = dict(
    decode_head=dict(
        num_classes=num_classes,
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1])),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomChoiceResize',
        scales=[int(512 * x * 0.1) for x in range(5, 21)],
        resize_type='ResizeShortestEdge',
        max_size=2048),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]


test_pipeline = [  # Cityscapes and Mapillary
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1024, 512), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
bdd100k_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1280, 720), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=4,
    dataset=dict(
        _delete_=True,
        type='GTAVDataset',
        data_root='data/gta',
        data_prefix=dict(img_path='images', seg_map_path='labels'),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='MultiTargetDataset',
        targets=dict(
            cityscapes=dict(
                type='CityscapesDataset',
                data_root='data/cityscapes',
                data_prefix=dict(
                    img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
                pipeline=test_pipeline),
            bdd100k=dict(
                type='BDD100KDataset',
                data_root='data/bdd100k',
                data_prefix=dict(
                    img_path='images/10k/val',
                    seg_map_path='labels/sem_seg/masks/val'),
                pipeline=bdd100k_test_pipeline),
            mapillary=dict(
                type='MapillaryCityscapesDataset',
                data_root='data/mapillary',
                data_prefix=dict(
                    img_path='half/val_img', seg_map_path='half/val_label'),
                pipeline=test_pipeline))))
test_dataloader = val_dataloader
val_evaluator = dict(type='MultiTargetIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# --aug-test: 6 scales (0.5-1.75 of 1024x512, the single scale of
# Cityscapes and Mapillary; BDD100K's 1280x720 is 0.71 of its own) x 2
# flips, every target
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(int(1024 * r), int(512 * r)),
                  keep_ratio=True)
             for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]
        ])
]

max_iters = 40000
param_scheduler = [
    dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=max_iters,
         by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=10000)
default_hooks = dict(checkpoint=dict(interval=4000))
