# DA-VPT under the domain-generalisation demo
# (../_base_/mask2former_vittiny_gta2city_demo.py):
# the method as in ./upernet_vittiny_ade20k_demo.py.
_base_ = ['../vpt/mask2former_vittiny_gta2city_demo.py']

model = dict(
    type='GuidedEncoderDecoder',
    image_labels='present',  # no scene categories in GTAV
    backbone=dict(
        addons=dict(
            guidance=dict(
                type='ProxyGuidance', layers=(-1, ), num_guided=2, beta=0.05,
                lambda_=0.05))))

custom_hooks = [
    dict(type='ClassProxyHook', images_per_class=10, interval=50)
]
