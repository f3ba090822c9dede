# DA-VPT on VTAB-1K / FGVC: choose the task with --cfg-options task=NAME.
# VPT-deep (../vpt/vitb_vtab_fgvc.py: P and lr from the task table) whose
# last layer's first k=10 prompts are class proxies (C <= k: one per class;
# else cosine k-means groups), re-clustered every epoch. beta = lambda from
# the paper per benchmark: 0.01 on VTAB-1K, 0.05 on FGVC (override with
# --cfg-options model.backbone.vit.addons.guidance.beta=...). Losses in the
# training log: loss_guidance_patch, loss_guidance_cls. DA-VPT+: add
# model.backbone.vit.also_train="['in_proj_bias']".
_base_ = ['../vpt/vitb_vtab_fgvc.py']

model = dict(
    type='GuidedImageClassifier',
    backbone=dict(
        vit=dict(
            addons=dict(
                guidance=dict(
                    type='ProxyGuidance',
                    layers=(-1, ),
                    num_guided=10,
                    beta=None,
                    lambda_=None)))))
benchmark_defaults = dict(
    vtab={
        'model.backbone.vit.addons.guidance.beta': 0.01,
        'model.backbone.vit.addons.guidance.lambda_': 0.01
    },
    fgvc={
        'model.backbone.vit.addons.guidance.beta': 0.05,
        'model.backbone.vit.addons.guidance.lambda_': 0.05
    })
custom_hooks = [dict(type='ClassProxyHook', images_per_class=10)]
