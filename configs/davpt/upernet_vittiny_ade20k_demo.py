# The embedded demo (../_base_/upernet_vittiny_ade20k_demo.py: 4-layer ViT of
# width 64, synthetic ADE20K-layout scenes, 300 iterations on a CPU) with
# DA-VPT: VPT-deep, the last layer's first 2 prompts are the proxies of the
# demo's two scene categories (living_room, street, from the
# sceneCategories.txt that tools/misc/make_ade20k_demo.py writes);
# re-clustered every 50 iterations.
#   python tools/train.py configs/davpt/upernet_vittiny_ade20k_demo.py
_base_ = ['../vpt/upernet_vittiny_ade20k_demo.py']

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
