"""LoRA (Hu et al., 2021; microsoft/LoRA's loralib): low-rank updates of a
frozen ViT's attention projections."""
import copy
import math
from typing import List, Sequence, Tuple

import torch
from mmseg.registry import MODELS
from torch import Tensor, nn

from ..attention import (PROJECTIONS, add_to_projection, packed_projection,
                         self_attention)
from ..costs import Shape, frozen_macs
from ..families import Block, Tokens
from .prompted_vit import PromptedVisionTransformer


class LowRankUpdates(nn.Module):
    """One block's updates, W_t' = W_t + (alpha / r) B_t A_t for each target
    projection t: A_t (r x D) kaiming-uniform(a = sqrt 5), B_t (D x r) zeros
    (loralib's initialisation: the block starts as the frozen one)."""

    def __init__(self, dims: int, rank: int, targets: Sequence[str],
                 scale: float):
        super().__init__()
        self.targets = tuple(targets)
        self.scale = scale
        self.down = nn.ParameterDict(
            {t: nn.Parameter(torch.empty(rank, dims)) for t in targets})
        self.up = nn.ParameterDict(
            {t: nn.Parameter(torch.zeros(dims, rank)) for t in targets})
        for weight in self.down.values():
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))

    def delta(self, target: str) -> Tensor:
        """(alpha / r) B_t A_t (D x D)."""
        return self.scale * self.up[target] @ self.down[target]

    def update(self, target: str, x: Tensor) -> Tensor:
        """(alpha / r) x A_t^T B_t^T for (dropped-out) tokens x (..., D)."""
        return self.scale * (x @ self.down[target].T) @ self.up[target].T


class LowRankOutput:
    """The output projection with its update: y = x W_o^T + b_o + s x A^T
    B^T (``weight`` and ``bias`` are the frozen ones)."""

    def __init__(self, out_proj: nn.Module, updates: LowRankUpdates,
                 dropout: nn.Module):
        self.base, self.updates, self.dropout = out_proj, updates, dropout
        self.weight, self.bias = out_proj.weight, out_proj.bias

    def __call__(self, x: Tensor) -> Tensor:
        return self.base(x) + self.updates.update('o', self.dropout(x))


class LowRankAttention:
    """A block's attention seen with its updates: the packed projection's
    rows are x W^T + b + (alpha / r) drop(x) A_t^T B_t^T for the targets
    q, k, v among them (``..attention`` calls ``project``); everything else
    (norms, rotary embedding, heads) is the block's."""

    def __init__(self, attention: nn.Module, updates: LowRankUpdates,
                 update_dropout: nn.Module):
        self.base, self.updates = attention, updates
        self.update_dropout = update_dropout
        for name in ('q_norm', 'k_norm', 'out_norm', 'rotate'):
            setattr(self, name, getattr(attention, name, None))
        self.out_proj = (LowRankOutput(attention.out_proj, updates,
                                       update_dropout)
                         if 'o' in updates.targets else attention.out_proj)
        self.num_heads = attention.num_heads
        self.embed_dim = attention.embed_dim
        self.dropout = attention.dropout  # the attention probabilities'

    @property
    def training(self) -> bool:
        return self.base.training

    @property
    def in_proj_weight(self) -> Tensor:
        return self.base.in_proj_weight

    @property
    def in_proj_bias(self) -> Tensor:
        return self.base.in_proj_bias

    def project(self, x: Tensor, start: int, stop: int) -> Tensor:
        out = packed_projection(self.base, x, start, stop)
        dims, dropped = self.embed_dim, None
        for index, target in enumerate('qkv'):
            row = index * dims - start
            if target in self.updates.targets and 0 <= row < stop - start:
                if dropped is None:
                    dropped = self.update_dropout(x)
                out[..., row:row + dims] += self.updates.update(target,
                                                                dropped)
        return out


def parse_targets(targets: Sequence[str]) -> Tuple[str, ...]:
    targets = tuple(targets)
    if not targets or not set(targets) <= set(PROJECTIONS) or len(
            set(targets)) != len(targets):
        raise ValueError(
            f'targets must be distinct projections among {PROJECTIONS} (q, '
            'k, v of the packed in-projection, o the output projection), '
            f'got {targets!r}')
    return targets


@MODELS.register_module()
class LoRAViT(PromptedVisionTransformer):
    """LoRA on every block of a frozen ViT: for each target projection t
    (default q and v),

        W_t x  ->  W_t x + (alpha / r) B_t A_t dropout(x),

    and the block otherwise as it is. ``merged_vit()`` is the family's plain
    model with B A added into its weights: no LoRA tensors, the frozen
    ViT's cost.

    Args:
        rank (int): r. Default 8.
        alpha (float): the update's scale is alpha / r. Default 8.
        targets (Sequence[str]): among 'q', 'k', 'v' (the packed
            in-projection's rows) and 'o' (the output projection). Default
            ('q', 'v').
        dropout (float): dropout on the updates' input. Default 0.
        See ``PromptedVisionTransformer`` for the other arguments (no
        prompts).
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
        self.updates = nn.ModuleList(
            LowRankUpdates(self.vit.embed_dims, rank, targets, alpha / rank)
            for _ in self.vit.blocks)
        self.update_dropout = nn.Dropout(dropout)

    def structure(self) -> dict:
        return dict(super().structure(), lora_targets=list(self.targets),
                    lora_scale=self.alpha / self.rank)

    def forward_block(self, index: int, block: Block, tokens: Tokens,
                      prompts: List[Tensor]) -> Tokens:
        attention = LowRankAttention(block.attention, self.updates[index],
                                     self.update_dropout)
        x = tokens.x
        x = x + block.attention_output(
            self_attention(attention, block.norm1(x)))
        return tokens.replace_x(block.mlp_residual(x))

    @torch.no_grad()
    def merged_vit(self) -> nn.Module:
        """The family's plain frozen model with W_t + (alpha / r) B_t A_t
        in its weights (a copy; no LoRA tensors left)."""
        vit = copy.deepcopy(self.vit)
        for block, updates in zip(vit.blocks, self.updates):
            for target in updates.targets:
                add_to_projection(block.attention, target,
                                  updates.delta(target))
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
    if not set(targets) & set('qkv'):
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
