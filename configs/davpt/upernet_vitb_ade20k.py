# DA-VPT on ADE20K: VPT-deep (../vpt/upernet_vitb_ade20k.py: UperNet +
# frozen ViT-B/16 IN-21k, P=200, 512x512, 160k iterations, 8x2 images,
# AdamW, same TTA) with DA-VPT's guidance (Distribution-Aware VPT, CVPR
# 2025): in the last layer the first k=20 prompts are proxies of groups of
# ADE20K's scene categories (the reference's image labels), trained with
#   backbone.loss_guidance_patch = beta   * L_PA(mean patch token, proxies)
#   backbone.loss_guidance_cls   = lambda * L_PA(class-token query, proxies)
# (Proxy-Anchor, alpha 32, margin 0.1). ClassProxyHook groups the scenes
# from the frozen model before training and re-clusters every 1,250
# iterations (about one epoch of ADE20K's 20,210 images at batch 16).
# image_labels='present' uses the classes of the label maps instead (no
# sceneCategories.txt needed). DA-VPT+: also tune the attention biases with
#   model.backbone.also_train=['in_proj_bias']
# (mmseg's packed q, k, v biases: the query bias trains too).
_base_ = ['../vpt/upernet_vitb_ade20k.py']

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
