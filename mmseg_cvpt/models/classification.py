"""Use the mmseg ViT backbones (prompted or not) in mmpretrain classifiers.

:class:`ClsTokenViT` is registered in mmpretrain's MODELS. It builds any ViT
from mmseg's registry (``VisionTransformer``, ``VPTViT``, ``CVPTViT``, ...)
and returns the class token after the final layer norm, which is what
mmpretrain's ``LinearClsHead`` expects::

    model = dict(
        type='ImageClassifier',
        backbone=dict(
            type='ClsTokenViT',
            vit=dict(type='CVPTViT', embed_dims=768, num_prompts=10, ...)),
        head=dict(type='LinearClsHead', num_classes=47, in_channels=768))
"""
from typing import Tuple

from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from mmseg.registry import MODELS as SEG_MODELS
from torch import Tensor

# The ViT settings that make its last output the normed class token: of
# mmseg's ViT, and of a frozen-ViT family given as ``vit=dict(type=...)``.
CLS_TOKEN_OUTPUT = dict(
    out_indices=-1, final_norm=True, with_cls_token=True,
    output_cls_token=True)
FAMILY_CLS_TOKEN_OUTPUT = dict(
    out_indices=-1, final_norm=True, output_cls_token=True)


@MODELS.register_module()
class ClsTokenViT(BaseModule):
    """A classification backbone around an mmseg ViT.

    Args:
        vit (dict): Config of the ViT, built from mmseg's registry (whatever
            the default scope is). ``out_indices``, ``final_norm``,
            ``with_cls_token`` and ``output_cls_token`` are set as needed (in
            its ``vit`` family config when it has one, e.g. ``TimmViT``); a
            conflicting value is an error.
        init_cfg (dict, optional): Initialisation config. The ViT's own
            ``init_cfg`` (e.g. a pretrained checkpoint) is applied by the
            ViT.
    """

    def __init__(self, vit: dict, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        vit = dict(vit)
        target, where, settings = vit, 'vit', CLS_TOKEN_OUTPUT
        if isinstance(vit.get('vit'), dict):  # a frozen-ViT family
            target = vit['vit'] = dict(vit['vit'])
            where, settings = 'vit.vit', FAMILY_CLS_TOKEN_OUTPUT
        for key, value in settings.items():
            if target.setdefault(key, value) != value:
                raise ValueError(f'ClsTokenViT needs {where}.{key}={value!r}, '
                                 f'got {target[key]!r}')
        vit.setdefault('_scope_', 'mmseg')
        self.vit = SEG_MODELS.build(vit)

    def forward(self, inputs: Tensor) -> Tuple[Tensor]:
        """Images (B, 3, H, W) -> ``(cls_token,)`` with cls_token (B, D)."""
        (_, cls_token), = self.vit(inputs)
        return (cls_token, )
