# GTAV -> Cityscapes, BDD100K, Mapillary (Rein's domain generalisation),
# Mask2Former, frozen DINOv3 ViT-L/16
# (../_base_/mask2former_dinov3_vitl16_gta2city.py), with DA-VPT: VPT-deep
# (../vpt/) with DA-VPT's guidance of the last layer (the class token's query
# vector; one proxy for each of the 19 classes). GTAV has no scene
# categories: an image's labels are the classes present in its label map.
_base_ = ['../vpt/mask2former_dinov3_vitl16_gta2city.py']

model = dict(
    type='GuidedEncoderDecoder',
    image_labels='present',
    backbone=dict(
        addons=dict(
            guidance=dict(
                type='ProxyGuidance',
                layers=(-1, ),
                num_guided=19,
                beta=0.01,
                lambda_=0.01,
                alpha=32.,
                margin=0.1))))

custom_hooks = [
    dict(type='ClassProxyHook', images_per_class=10, interval=1250)
]
