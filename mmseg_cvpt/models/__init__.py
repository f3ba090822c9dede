from .backbones import CVPTViT, PromptedVisionTransformer, VPTViT
from .prompts import LayerPrompts

__all__ = ['PromptedVisionTransformer', 'VPTViT', 'CVPTViT', 'LayerPrompts']
