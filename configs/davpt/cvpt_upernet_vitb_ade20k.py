# DA-VPT + CVPT on ADE20K: CVPT at P=200 (../cvpt/upernet_vitb_ade20k.py)
# with DA-VPT's guidance as in ./upernet_vitb_ade20k.py: the class token's
# query vector is the cross-attention's query (W_q of the CA input at
# position 3), X the mean patch token of the last layer's input.
_base_ = ['../cvpt/upernet_vitb_ade20k.py']

model = dict(
    type='GuidedEncoderDecoder',
    image_labels='scene',
    backbone=dict(
        guidance_cfg=dict(
            type='ProxyGuidance',
            layers=(-1, ),
            num_guided=20,
            beta=0.01,
            lambda_=0.01,
            alpha=32.,
            margin=0.1)))

custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='ClassProxyHook', images_per_class=10, interval=1250),
]
