"""The tuned part of a model's state dict: everything but the frozen ViT
weights that its base checkpoint provides (see ``backbones.frozen_base``)."""
from collections import OrderedDict
from typing import Optional, Tuple

from torch import nn

from .backbones import FrozenViTBackbone, find_prompted_backbone


def backbone_of(model: nn.Module) -> Tuple[FrozenViTBackbone, str]:
    """The prompted backbone of a model and the prefix of its keys in the
    model's state dict, e.g. 'backbone.' or 'backbone.vit.'."""
    backbone = find_prompted_backbone(model)
    name = next(n for n, m in model.named_modules() if m is backbone)
    return backbone, f'{name}.' if name else ''


def tuned_state_dict(model: nn.Module,
                     state_dict: Optional[dict] = None) -> OrderedDict:
    """``state_dict`` (default: the model's) without the backbone's frozen
    ViT tensors: trainable parameters, the buffers of the prompts, guidance
    and heads, and the backbone's record of its base checkpoint."""
    backbone, prefix = backbone_of(model)
    frozen = {prefix + k for k in backbone.frozen_keys()}
    state_dict = model.state_dict() if state_dict is None else state_dict
    tuned = OrderedDict(
        (k, v) for k, v in state_dict.items() if k not in frozen)
    tuned._metadata = getattr(state_dict, '_metadata', OrderedDict())
    return tuned
