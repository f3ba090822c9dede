"""LoRA (Hu et al., 2021; microsoft/LoRA's loralib): low-rank updates of a
frozen ViT's linear projections, through the blocks' projection hooks."""
import copy
import math
from typing import Dict, Sequence, Tuple

import torch
from mmseg.registry import MODELS
from torch import Tensor, nn

from ..attention import PROJECTIONS, ProjectionHook
from ..costs import Shape, frozen_macs
from .prompted_vit import FrozenViTBackbone


class LowRankUpdates(nn.Module, ProjectionHook):
    """One block's updates, W_t' = W_t + (alpha / r) B_t A_t for each target
    projection t (out x in): A_t (r x in) kaiming-uniform(a = sqrt 5), B_t
    (out x r) zeros (loralib's initialisation: the block starts as the
    frozen one). As the block's projection hook it adds
    (alpha / r) drop(x) A_t^T B_t^T to projection t's output."""

    def __init__(self, shapes: Dict[str, Tuple[int, int]], rank: int,
                 scale: float, dropout: nn.Module):
        super().__init__()
        self.targets = tuple(shapes)
        self.scale = scale
        self.dropout = dropout
        self.down = nn.ParameterDict(
            {t: nn.Parameter(torch.empty(rank, shapes[t][1]))
             for t in self.targets})
        self.up = nn.ParameterDict(
            {t: nn.Parameter(torch.zeros(shapes[t][0], rank))
             for t in self.targets})
        for weight in self.down.values():
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))

    def delta(self, target: str) -> Tensor:
        """(alpha / r) B_t A_t (out x in)."""
        return self.scale * self.up[target] @ self.down[target]

    def add_update(self, target: str, x: Tensor, out: Tensor) -> Tensor:
        """out + (alpha / r) drop(x) A_t^T B_t^T, the last product adding
        ``out`` itself (``torch.addmm``: no separate pass over it)."""
        low = self.scale * (self.dropout(x) @ self.down[target].T)
        return torch.addmm(out.flatten(0, -2), low.flatten(0, -2),
                           self.up[target].T).view_as(out)


def parse_targets(targets: Sequence[str]) -> Tuple[str, ...]:
    targets = tuple(targets)
    if not targets or len(set(targets)) != len(targets) or not all(
            isinstance(t, str) for t in targets):
        raise ValueError(
            'targets must be distinct projection names: q, k, v (the packed '
            'in-projection\'s rows), o (the output projection) and the MLP\'s '
            f'linears (fc1, fc2; fc1_g, fc1_x for SwiGLU), got {targets!r}')
    return targets


@MODELS.register_module()
class LoRAViT(FrozenViTBackbone):
    """LoRA on every block of a frozen ViT: for each target projection t
    (default q and v),

        W_t x  ->  W_t x + (alpha / r) B_t A_t dropout(x),

    and the block otherwise as it is. Targets are named as HF peft's
    ``target_modules``: 'q', 'k', 'v' (the rows of the packed
    in-projection), 'o' (the output projection) and the MLP's linears,
    'fc1' and 'fc2' ('fc1_g', 'fc1_x', 'fc2' for EVA's SwiGLU).
    ``merged_vit()`` is the family's plain model with B A added into its
    weights: no LoRA tensors, the frozen ViT's cost.

    Args:
        rank (int): r. Default 8.
        alpha (float): the update's scale is alpha / r. Default 8.
        targets (Sequence[str]): the projections. Default ('q', 'v').
        dropout (float): dropout on the updates' input. Default 0.
        See ``FrozenViTBackbone`` for the other arguments (no prompts).
    """

    uses_prompts = False

    def __init__(self,
                 rank: int = 8,
                 alpha: float = 8.,
                 targets: Sequence[str] = ('q', 'v'),
                 dropout: float = 0.,
                 **kwargs):
        if not (isinstance(rank, int) and rank > 0):
            raise ValueError(f'rank must be a positive integer, got {rank!r}')
        targets = parse_targets(targets)
        super().__init__(**kwargs)
        self.rank, self.alpha, self.targets = rank, alpha, targets
        self.update_dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.vit.blocks[0].check_targets(targets, 'LoRA')
        self.updates = nn.ModuleList(
            LowRankUpdates({t: block.projection_shape(t) for t in targets},
                           rank, alpha / rank, self.update_dropout)
            for block in self.vit.blocks)
        self.hook_blocks(projection=list(self.updates))

    def structure(self) -> dict:
        return dict(super().structure(), lora_targets=list(self.targets),
                    lora_scale=self.alpha / self.rank)

    @torch.no_grad()
    def merged_vit(self) -> nn.Module:
        """The family's plain frozen model with W_t + (alpha / r) B_t A_t
        in its weights (a copy; no LoRA tensors left)."""
        vit = copy.deepcopy(self.vit)
        for block, updates in zip(vit.blocks, self.updates):
            for target in updates.targets:
                block.add_to_weight(target, updates.delta(target))
        return vit.requires_grad_(False)


# ---- cost (docs/performance.md) -------------------------------------------
def lora_macs(s: Shape, rank: int = 8,
              targets: Sequence[str] = ('q', 'v')) -> Tuple[int, int]:
    """(train step, inference) multiply-adds of unmerged LoRA with updates
    on ``targets`` (at least one of q, k, v). Per token and target the
    update x A^T B^T, 2 r D forward; backward the gradients of B, of x A^T
    and of A, 3 r D, and of x, r D more where x needs one (not at layer 1,
    whose input, the embeddings, needs none; nor do layer 1's W_q, W_k,
    W_v). Merged: the frozen ViT's cost."""
    if not set(targets) & set('qkv') or set(targets) - set(PROJECTIONS):
        raise ValueError('lora_macs: the formula is for updates of q, k or v '
                         f'(and o), got {targets!r}')
    train, infer = frozen_macs(s)
    tokens = s.batch * s.tokens
    update = 2 * rank * s.dims
    forward = s.layers * tokens * len(targets) * update
    backward = 2 * forward - tokens * len(set(targets) & set('qkv')) * (
        rank * s.dims)
    return (train + forward + backward - tokens * 3 * s.dims**2,
            infer + forward)
