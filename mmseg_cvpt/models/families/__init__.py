from .base import Block, Tokens
from .mmseg_vit import MMSegViT, check_out_indices

__all__ = ['Block', 'Tokens', 'MMSegViT', 'check_out_indices']
