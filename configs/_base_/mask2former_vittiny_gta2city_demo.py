# The domain-generalisation demo: the demo's tiny Mask2Former
# (./mask2former_vittiny_ade20k_demo.py) trained on a synthetic source
# domain in GTAV's layout and tested on two shifted target domains in
# Cityscapes' and Mapillary's layouts (tools/misc/make_dg_demo.py: the ADE20K
# demo's scenes, its six classes as six of Cityscapes' 19), each target's
# mIoU and their mean in one test, as ./mask2former_dinov3_vitl16_gta2city.py
# does at full size. Every method's mask2former_vittiny_gta2city_demo.py
# inherits it; as it is, head-only.
#   python tools/misc/make_dg_demo.py data/dg_demo
#   python tools/dataset_converters/gta.py data/dg_demo/gtav
#   python tools/dataset_converters/mapillary2cityscapes.py \
#       data/dg_demo/mapillary --resize
#   python tools/train.py configs/baseline/mask2former_vittiny_gta2city_demo.py
_base_ = ['./mask2former_vittiny_ade20k_demo.py']

num_classes = 19
model = dict(
    decode_head=dict(
        num_classes=num_classes,
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1])))

data_root = 'data/dg_demo'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(256, 64),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=(64, 64), cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 64), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='GTAVDataset',
        data_root=data_root + '/gtav',
        data_prefix=dict(img_path='images', seg_map_path='labels'),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='MultiTargetDataset',
        targets=dict(
            cityscapes=dict(
                type='CityscapesDataset',
                data_root=data_root + '/cityscapes',
                data_prefix=dict(
                    img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
                pipeline=test_pipeline),
            mapillary=dict(
                type='MapillaryCityscapesDataset',
                data_root=data_root + '/mapillary',
                data_prefix=dict(
                    img_path='half/val_img', seg_map_path='half/val_label'),
                pipeline=test_pipeline))))
test_dataloader = val_dataloader
val_evaluator = dict(type='MultiTargetIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
