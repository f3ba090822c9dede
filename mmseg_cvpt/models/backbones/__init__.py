from .cvpt_vit import CVPTViT
from .frozen_base import (BASE_CHECKPOINT_ENV, EXTRA_STATE_KEY,
                          FrozenBaseError)
from .prompted_vit import PromptedVisionTransformer, find_prompted_backbone
from .vpt_vit import VPTViT

__all__ = [
    'PromptedVisionTransformer', 'VPTViT', 'CVPTViT',
    'find_prompted_backbone', 'FrozenBaseError', 'BASE_CHECKPOINT_ENV',
    'EXTRA_STATE_KEY'
]
