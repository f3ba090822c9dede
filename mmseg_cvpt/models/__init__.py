from .backbones import CVPTViT, PromptedVisionTransformer, VPTViT
from .classification import ClsTokenViT
from .prompts import LayerPrompts

__all__ = [
    'PromptedVisionTransformer', 'VPTViT', 'CVPTViT', 'LayerPrompts',
    'ClsTokenViT'
]
