from .cvpt_vit import CVPTViT
from .prompted_vit import PromptedVisionTransformer
from .vpt_vit import VPTViT

__all__ = ['PromptedVisionTransformer', 'VPTViT', 'CVPTViT']
