# DA-VPT on ADE20K with a frozen DINOv2 ViT-B/14: VPT-deep
# (../vpt/upernet_dinov2_vitb14_ade20k.py) with DA-VPT's guidance as in
# ./upernet_vitb_ade20k.py (the class token's query vector; the registers
# are prefix tokens, not patches).
_base_ = ['../vpt/upernet_dinov2_vitb14_ade20k.py']

model = dict(
    type='GuidedEncoderDecoder',
    image_labels='scene',
    backbone=dict(
        addons=dict(
            guidance=dict(
                type='ProxyGuidance',
                layers=(-1, ),
                num_guided=20,
                beta=0.01,
                lambda_=0.01,
                alpha=32.,
                margin=0.1))))

custom_hooks = [
    dict(type='ClassProxyHook', images_per_class=10, interval=1250)
]
