# The timm family's demo with DA-VPT: VPT-deep
# (../vpt/upernet_vittiny_dinov2_ade20k_demo.py) whose last layer's first 2
# prompts are the proxies of the demo's two scene categories, as in
# ./upernet_vittiny_ade20k_demo.py.
_base_ = ['../vpt/upernet_vittiny_dinov2_ade20k_demo.py']

model = dict(
    type='GuidedEncoderDecoder',
    image_labels='scene',
    backbone=dict(
        addons=dict(
            guidance=dict(
                type='ProxyGuidance', layers=(-1, ), num_guided=2, beta=0.05,
                lambda_=0.05))))

custom_hooks = [
    dict(type='ClassProxyHook', images_per_class=10, interval=50)
]
