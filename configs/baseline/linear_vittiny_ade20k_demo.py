# The embedded demo (../_base_/upernet_vittiny_ade20k_demo.py) head-only with
# the linear probe of DINOv2 / DINOv3 (mmseg_cvpt.models.LinearProbeHead:
# BatchNorm and a 1x1 convolution on the last block's patch features, no
# neck, no auxiliary head): the frozen baseline that foundation-model papers
# quote. The demo's schedule, optimiser and TTA; only the head changes.
#   python tools/train.py configs/baseline/linear_vittiny_ade20k_demo.py
_base_ = ['./upernet_vittiny_ade20k_demo.py']
model = dict(
    neck=None,
    decode_head=dict(
        _delete_=True,
        type='LinearProbeHead',
        in_channels=64,
        in_index=-1,
        num_classes=6,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=None)
