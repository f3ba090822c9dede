from .cvpt_vit import CVPTViT
from .frozen_base import EXTRA_STATE_KEY, FrozenBase, FrozenBaseError
from .prompted_vit import (PromptedVisionTransformer, find_addon,
                           find_prompted_backbone)
from .vpt_vit import VPTViT

__all__ = [
    'PromptedVisionTransformer', 'VPTViT', 'CVPTViT',
    'find_prompted_backbone', 'find_addon', 'FrozenBase', 'FrozenBaseError',
    'EXTRA_STATE_KEY'
]
