from .adaptformer_vit import AdaptFormerViT
from .cvpt_vit import CVPTViT
from .frozen_base import EXTRA_STATE_KEY, FrozenBase, FrozenBaseError
from .lora_vit import LoRAViT
from .prompted_vit import (FrozenViTBackbone, PromptedVisionTransformer,
                           find_addon, find_prompted_backbone)
from .rein_vit import ReinViT
from .vpt_vit import VPTViT

__all__ = [
    'FrozenViTBackbone', 'PromptedVisionTransformer', 'VPTViT', 'CVPTViT',
    'LoRAViT', 'AdaptFormerViT', 'ReinViT', 'find_prompted_backbone',
    'find_addon', 'FrozenBase', 'FrozenBaseError', 'EXTRA_STATE_KEY'
]
