from .backbones import CVPTViT, PromptedVisionTransformer, VPTViT
from .classification import ClsTokenViT
from .guidance import ProxyGuidance
from .guided import GuidedEncoderDecoder, GuidedImageClassifier
from .losses import proxy_anchor_loss
from .prompts import (BilinearPrompts, LayerPrompts, PromptProvider,
                      WhitenedPrompts)
from .tuned_state import backbone_of, tuned_state_dict

__all__ = [
    'PromptedVisionTransformer', 'VPTViT', 'CVPTViT', 'PromptProvider',
    'LayerPrompts', 'WhitenedPrompts', 'BilinearPrompts', 'ClsTokenViT',
    'ProxyGuidance', 'GuidedEncoderDecoder', 'GuidedImageClassifier',
    'proxy_anchor_loss', 'backbone_of', 'tuned_state_dict'
]
