from .backbones import (AdaptFormerViT, CVPTViT, FrozenViTBackbone, LoRAViT,
                        PromptedVisionTransformer, ReinViT, VPTViT,
                        find_addon, find_prompted_backbone)
from .classification import ClsTokenViT
from .families import Block, FrozenViTFamily, MMSegViT, TimmViT, Tokens
from .guidance import ProxyGuidance
from .guided import GuidedEncoderDecoder, GuidedImageClassifier
from .linear_probe import LinearProbeHead
from .losses import proxy_anchor_loss
from .query_link import QueryLinkedEncoderDecoder, ReinMask2FormerHead
from .prompt_statistics import calibrate_prompts, prompt_query_statistics
from .prompts import (BilinearPrompts, LayerPrompts, PromptProvider,
                      WhitenedPrompts)
from .tuned_state import backbone_of, tuned_state_dict

__all__ = [
    'FrozenViTBackbone', 'PromptedVisionTransformer', 'VPTViT', 'CVPTViT',
    'LoRAViT', 'AdaptFormerViT', 'ReinViT', 'FrozenViTFamily', 'Block',
    'MMSegViT', 'TimmViT', 'Tokens',
    'find_prompted_backbone', 'find_addon', 'PromptProvider', 'LayerPrompts',
    'WhitenedPrompts', 'BilinearPrompts', 'calibrate_prompts',
    'prompt_query_statistics', 'ClsTokenViT', 'ProxyGuidance',
    'GuidedEncoderDecoder', 'GuidedImageClassifier', 'LinearProbeHead',
    'proxy_anchor_loss', 'QueryLinkedEncoderDecoder', 'ReinMask2FormerHead',
    'backbone_of', 'tuned_state_dict'
]
