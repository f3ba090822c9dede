"""What every method needs from a frozen ViT: the family interface.

A family wraps one ViT implementation (mmseg's ``VisionTransformer`` here;
timm's next) and gives the prompted core and its methods

* ``embed(images) -> Tokens``: patch embedding, prefix tokens (class token,
  registers) and position embedding;
* ``blocks``: per block a :class:`Block` view: its norms, its attention
  projections (an ``nn.MultiheadAttention``-like object with the packed
  ``in_proj_weight`` / ``in_proj_bias`` [W_q; W_k; W_v], ``out_proj``,
  ``num_heads``, ``embed_dim``, and the q / k norms, rotary embedding and
  output norm of ``..attention`` where the block has them), the attention
  output's path back into the residual (projection dropout, layer scale,
  drop-path) and the MLP branch; ``block.at(tokens)`` is the view for a
  forward over those tokens (bound to their rotary embedding);
* ``final_normed(x)``, ``out_indices``, ``out_origin`` and
  ``output_cls_token`` for the outputs (``Tokens.feature_map``);
* ``pretrained_keys`` (its state-dict keys), ``load_pretrained(path,
  prefix)`` (strict: missing or misshapen ViT weights raise),
  ``checkpoint_weights(state_dict, prefix)`` (a checkpoint's ViT tensors
  in the family's keys, position embedding resized: how a base checkpoint
  is read back) and ``checkpoint`` (the family's own weights file, read by
  ``init_weights``, or None);
* ``embed_dims``, ``patch_size``, ``num_prefix_tokens``.
"""
from typing import List, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor, nn


class Tokens(NamedTuple):
    """The sequence between blocks, laid out as x = [prefix, prompts,
    patches] (B, N, D): ``num_prefix`` class / register tokens, then the
    ``num_prompts`` prompt tokens that are in the sequence now (VPT's
    reference form), then the h x w patches of ``hw_shape``; ``rope`` the
    patches' rotary embedding for families whose attention rotates them
    (EVA-02), else None."""
    x: Tensor
    num_prefix: int
    num_prompts: int
    hw_shape: Tuple[int, int]
    rope: Optional[Tensor] = None

    @property
    def prefix(self) -> Tensor:
        return self.x[:, :self.num_prefix]

    @property
    def patches(self) -> Tensor:
        return self.x[:, self.num_prefix + self.num_prompts:]

    def feature_map(self, with_cls_token: bool = False
                    ) -> Union[Tensor, List[Tensor]]:
        """The patch tokens as a (B, D, h, w) map (prefix and prompt tokens
        dropped); ``[map, class token]`` with ``with_cls_token``."""
        height, width = self.hw_shape
        out = self.patches.transpose(1, 2).reshape(len(self.x), -1, height,
                                                   width)
        return [out, self.x[:, 0]] if with_cls_token else out

    def without_prompts(self) -> Tensor:
        """x without its prompt tokens: [prefix, patches]."""
        if self.num_prompts == 0:
            return self.x
        return torch.cat((self.prefix, self.patches), dim=1)

    def replace_x(self, x: Tensor, num_prompts: Optional[int] = None
                  ) -> 'Tokens':
        """The same layout with new values (and ``num_prompts`` prompt
        tokens, when given)."""
        return self._replace(
            x=x, num_prompts=self.num_prompts
            if num_prompts is None else num_prompts)


class Block:
    """One frozen block seen through the family interface (pre-norm):

        x = x + attention_output(self_attention(norm1(x)))
        x = mlp_residual(x)          # x + MLP(norm2(x))

    Families subclass it for their block type; ``module`` is the block's
    ``nn.Module`` (its parameters, train mode, activation checkpointing),
    whose ``norm1`` and ``norm2`` are the block's norms.
    """

    module: nn.Module
    attention: nn.Module  # packed projections, see the module docstring

    @property
    def norm1(self) -> nn.Module:
        return self.module.norm1

    @property
    def norm2(self) -> nn.Module:
        return self.module.norm2

    def self_attention(self, h: Tensor) -> Tensor:
        """SA(h) of normed tokens h (B, N, D), before ``attention_output``."""
        raise NotImplementedError

    def attention_output(self, out: Tensor) -> Tensor:
        """An attention output on its way into the residual stream."""
        raise NotImplementedError

    def mlp_residual(self, x: Tensor, h: Optional[Tensor] = None) -> Tensor:
        """x + MLP(h), h = norm2(x) unless given."""
        raise NotImplementedError

    def at(self, tokens: Tokens) -> 'Block':
        """The block for a forward over ``tokens`` (families with a rotary
        embedding bind it here)."""
        return self

    def attention_residual(self, x: Tensor) -> Tensor:
        """x + SA(norm1(x)), through ``attention_output``."""
        return x + self.attention_output(self.self_attention(self.norm1(x)))

    def __call__(self, x: Tensor) -> Tensor:
        """The plain block."""
        return self.mlp_residual(self.attention_residual(x))

    @property
    def with_cp(self) -> bool:
        """Whether the block is checkpointed (recomputed in the backward)."""
        return False

    @property
    def output_scale(self) -> Optional[Tensor]:
        """The layer scale gamma (D,) of the attention branch, None where the
        block has none: what another use of that branch (CVPT's
        cross-attention) is scaled by."""
        return None
