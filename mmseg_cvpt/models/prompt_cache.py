"""A per-layer cache of what a prompted backbone computes from its prompts
alone (the prompts' keys and values, or projections folded with them).

That side of a layer does not depend on the image: it is computed once per
forward for the whole batch, and in deployment (eval mode, no gradient to
it) once until the prompts or weights change. An entry is keyed on the
identity, storage and in-place version counter of every tensor it is
computed from: optimiser steps and ``load_state_dict`` (both in-place)
invalidate it; the backbone clears it on ``train()`` and on loading.

Under ``torch.compile`` the cache steps aside: its key reads tensors'
storage and version counters in Python, which a graph cannot, so a
compiled forward computes the prompts' side in its graph (m x D^2 per
layer, next to the N x D^2 of the patches' side), and the graph has no
break.
"""
from typing import Any, Callable, Dict, Hashable, Sequence, Tuple

import torch
from torch import Tensor, nn


def grad_reaches(tensors: Sequence[Tensor]) -> bool:
    """Whether a gradient can flow to any of these tensors now."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def autocast_state(device_type: str) -> tuple:
    """Whether autocast is on for ``device_type``, and its dtype."""
    if not torch.is_autocast_enabled(device_type):
        return (False, )
    return (True, torch.get_autocast_dtype(device_type))


def tensors_of(*modules: nn.Module) -> list:
    """The parameters and buffers of ``modules``."""
    return [tensor for module in modules
            for tensor in (*module.parameters(), *module.buffers())]


class PromptCache:
    """``get(index, sources, compute, varies)`` returns ``compute()``, cached
    for layer ``index`` unless a gradient reaches its ``sources`` or the
    prompts ``varies`` between calls (train mode)."""

    def __init__(self):
        self._entries: Dict[int, Tuple[tuple, Any]] = {}

    def get(self, index: int, sources: Sequence[Tensor],
            compute: Callable[[], Any], varies: bool,
            tag: Hashable = ()) -> Any:
        """``compute()`` for layer ``index``, from the cache where it is
        valid; ``tag`` names anything else the result depends on."""
        if varies or torch.compiler.is_compiling() or grad_reaches(sources):
            return compute()
        key = (tag, torch.is_inference_mode_enabled(),
               autocast_state(sources[0].device.type),
               tuple((id(t), t.data_ptr(), t._version) for t in sources))
        cached_key, value = self._entries.get(index, (None, None))
        if cached_key != key:
            value = compute()
            self._entries[index] = (key, value)
        return value

    def clear(self) -> None:
        self._entries.clear()
