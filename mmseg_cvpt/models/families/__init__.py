from .base import Block, FrozenViTFamily, Tokens
from .mmseg_vit import MMSegViT, check_out_indices
from .timm_vit import TimmViT

__all__ = [
    'Block', 'FrozenViTFamily', 'Tokens', 'MMSegViT', 'TimmViT',
    'check_out_indices'
]
