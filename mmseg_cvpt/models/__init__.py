from .backbones import CVPTViT, PromptedVisionTransformer, VPTViT
from .classification import ClsTokenViT
from .prompts import (BilinearPrompts, LayerPrompts, PromptProvider,
                      WhitenedPrompts)

__all__ = [
    'PromptedVisionTransformer', 'VPTViT', 'CVPTViT', 'PromptProvider',
    'LayerPrompts', 'WhitenedPrompts', 'BilinearPrompts', 'ClsTokenViT'
]
