"""The linear probe of DINOv2 and DINOv3 as a decode head, for any backbone.

    logits = W BN(f) + b       (a 1x1 convolution of batch-normed features)

DINOv3's protocol (dinov3/eval/segmentation, the ADE20K linear config): f
the last layer's patch features (``in_index=-1``). DINOv2's "+ms": f the
last four layers' patch maps concatenated along the channels
(``in_index=[-4, -3, -2, -1]``, ``input_transform='resize_concat'``), tested
multi-scale (``tools/test.py --aug-test``); its "lin" also concatenates the
class token to every patch (``with_cls_token=True``, the backbone's
``output_cls_token=True``: each output is [patch map, class token]).
Head-only with this head is the frozen baseline the foundation models'
papers quote.
"""
from typing import List, Sequence, Union

import torch
from mmcv.cnn import build_norm_layer
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class LinearProbeHead(BaseDecodeHead):
    """BatchNorm, dropout and a 1x1 convolution on the selected features.

    Args:
        in_channels (int | Sequence[int]): the channels of the selected
            backbone outputs (a sequence with ``resize_concat``); twice
            each with ``with_cls_token``.
        with_cls_token (bool): each output is [patch map, class token] and
            the class token is concatenated to every patch. Default False.
        norm_cfg (dict): the norm before the convolution. Default
            ``dict(type='SyncBN')`` (plain BatchNorm outside distributed
            runs, as mmseg's SyncBN layers become).
        Others as mmseg's ``BaseDecodeHead`` (``channels`` is the features'
        width and is filled in; ``dropout_ratio`` defaults to 0).
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 with_cls_token: bool = False,
                 norm_cfg: dict = dict(type='SyncBN', requires_grad=True),
                 dropout_ratio: float = 0.,
                 **kwargs):
        if 'channels' in kwargs:
            raise ValueError('LinearProbeHead: channels is the features\' '
                             'width (the sum of in_channels); leave it out')
        width = in_channels if isinstance(in_channels, int) else sum(
            in_channels)
        self.with_cls_token = with_cls_token
        super().__init__(in_channels, width, norm_cfg=norm_cfg,
                         dropout_ratio=dropout_ratio, **kwargs)
        self.bn = build_norm_layer(norm_cfg, width)[1]

    def _with_cls_tokens(self, inputs: List) -> List[Tensor]:
        """[patch map, class token] -> the map with the class token
        concatenated to every patch (channels doubled)."""
        maps = []
        for patches, cls_token in inputs:
            tokens = cls_token[:, :, None, None].expand_as(patches)
            maps.append(torch.cat((patches, tokens), dim=1))
        return maps

    def forward(self, inputs: List) -> Tensor:
        if self.with_cls_token:
            inputs = self._with_cls_tokens(inputs)
        return self.cls_seg(self.bn(self._transform_inputs(inputs)))
