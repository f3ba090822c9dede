"""Where prompts come from: a small module that returns the prompts of every
prompted layer.

A prompted backbone builds one of these from ``prompt_cfg`` and calls it once
per forward: ``prompts()`` is an (L, m, D) tensor whose row i holds the
prompts of layer i. (One call for all layers keeps the backward to one
gradient tensor rather than a full-size one per layer.) Other
parameterisations of the prompts (whitened, low-rank, ...) are registered
next to ``LayerPrompts``.
"""
import math

import torch
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor, nn

PROMPT_INITS = ('uniform', 'xavier', 'normal')


@MODELS.register_module()
class LayerPrompts(BaseModule):
    """Independent learnable prompts per layer: P_i in R^{m x D}, i < L.

    Args:
        num_layers (int): L, the number of prompted layers.
        num_prompts (int): m, prompts per layer.
        embed_dims (int): D.
        init (str): 'uniform' is VPT's U(-v, v) with
            v = sqrt(6 / (3 * patch_size^2 + D)); 'xavier' is xavier-uniform of
            each layer's (m, D) matrix, v = sqrt(6 / (m + D)) (CVPT);
            'normal' is N(0, 0.02^2).
        patch_size (int): used by the 'uniform' init.
    """

    def __init__(self,
                 num_layers: int,
                 num_prompts: int,
                 embed_dims: int,
                 init: str = 'xavier',
                 patch_size: int = 16,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if init not in PROMPT_INITS:
            raise ValueError(f'prompt init must be one of {PROMPT_INITS}, '
                             f'got {init!r}')
        self.tokens = nn.Parameter(
            torch.empty(num_layers, num_prompts, embed_dims))
        self._initialise(init, patch_size)

    def _initialise(self, init: str, patch_size: int) -> None:
        num_prompts, embed_dims = self.tokens.shape[1:]
        if init == 'uniform':
            bound = math.sqrt(6. / (3 * patch_size**2 + embed_dims))
            nn.init.uniform_(self.tokens, -bound, bound)
        elif init == 'xavier':
            bound = math.sqrt(6. / (num_prompts + embed_dims))
            nn.init.uniform_(self.tokens, -bound, bound)
        else:
            nn.init.normal_(self.tokens, std=0.02)

    @property
    def num_layers(self) -> int:
        return self.tokens.shape[0]

    def forward(self) -> Tensor:
        """The prompts of all layers, (L, m, D)."""
        return self.tokens
