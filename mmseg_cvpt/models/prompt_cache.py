"""A per-layer cache of what a prompted backbone computes from its prompts
alone (the prompts' keys and values, or projections folded with them).

That side of a layer does not depend on the image: it is computed once per
forward for the whole batch, and in deployment (eval mode, no gradient to
it) once until the prompts or weights change. An entry is keyed on the
identity, storage and in-place version counter of every tensor it is
computed from: optimiser steps and ``load_state_dict`` (both in-place)
invalidate it, and so does ``train()``.
"""
from typing import Any, Callable, Dict, Hashable, List, Sequence, Tuple

import torch
from torch import Tensor, nn


def grad_reaches(tensors: Sequence[Tensor]) -> bool:
    """Whether a gradient can flow to any of these tensors now."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class PromptCacheMixin:
    """Mixed into a ``PromptedVisionTransformer`` (before it in the bases).

    ``cached_prompt_side(index, sources, compute)`` returns ``compute()``,
    cached for layer ``index`` when nothing can make it differ between
    calls: no gradient reaches its sources and neither the backbone, its
    prompts nor their dropout are in train mode.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._prompt_cache: Dict[int, Tuple[tuple, Any]] = {}

    def prompt_sources(self, *modules: nn.Module) -> List[Tensor]:
        """The prompts' tensors and those of ``modules``: everything that a
        layer's prompt side computed by ``modules`` comes from."""
        return [
            tensor for module in (self.prompts, *modules)
            for tensor in (*module.parameters(), *module.buffers())
        ]

    def cached_prompt_side(self, index: int, sources: Sequence[Tensor],
                           compute: Callable[[], Any],
                           tag: Hashable = ()) -> Any:
        """``compute()`` for layer ``index``, from the cache where it is
        valid; ``tag`` names anything else the result depends on."""
        if grad_reaches(sources) or self._stochastic_prompts():
            return compute()
        key = (tag, torch.is_inference_mode_enabled(),
               tuple((id(t), t.data_ptr(), t._version) for t in sources))
        cached_key, value = self._prompt_cache.get(index, (None, None))
        if cached_key != key:
            value = compute()
            self._prompt_cache[index] = (key, value)
        return value

    def _stochastic_prompts(self) -> bool:
        """Whether the prompts may differ between calls (train mode)."""
        return any(module.training
                   for module in (self, self.prompts, self.prompt_dropout))

    def clear_prompt_cache(self) -> None:
        self._prompt_cache.clear()

    def train(self, mode: bool = True):
        self.clear_prompt_cache()
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self.clear_prompt_cache()
        super()._load_from_state_dict(*args, **kwargs)
