"""What every method needs from a frozen ViT: the family interface.

A family wraps one ViT implementation (mmseg's ``VisionTransformer``,
timm's ``VisionTransformer`` and ``Eva``) and subclasses
:class:`FrozenViTFamily`, whose members are the contract: ``embed``
(tokens from images), ``blocks`` (a :class:`Block` view per block, built
once), ``final_normed``, ``feature_map`` and the output arguments
(``out_indices``, ``final_norm``, ``output_cls_token``, ``out_origin``),
``load_pretrained`` (strict), ``checkpoint_weights``, ``pretrained_keys``,
``checkpoint``, ``embed_dims``, ``patch_size`` and ``num_prefix_tokens``.

A :class:`Block` is one pre-norm block seen as its parts: norms, an
attention view (``..attention.AttentionView``), the attention output's
path into the residual, the MLP and its path. A method changes a block
through hooks (``with_hooks``), never by re-writing its residual path:

* a projection hook (``..attention.ProjectionHook``) adds to the outputs
  of the block's linear projections by name: q, k, v, o of the attention
  and the MLP's own linears (``mlp_linears``: fc1 and fc2; fc1_g, fc1_x and
  fc2 for a SwiGLU MLP);
* an MLP hook adds a branch parallel to the MLP: x + MLP(LN2(x)) + g(x).
"""
import copy
from abc import abstractmethod
from typing import (Callable, Dict, FrozenSet, List, NamedTuple, Optional,
                    Tuple, Union)

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..attention import (PROJECTIONS, AttentionView, ProjectionHook,
                         self_attention, with_update)


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


#: a branch parallel to a block's MLP: g(x) for the MLP's residual input x
MLPHook = Callable[[Tensor], Tensor]


class Block:
    """One frozen block seen through the family interface (pre-norm):

        x = x + attention_output(self_attention(norm1(x)))
        x = x + mlp_output(mlp(norm2(x))) (+ mlp_hook(x))

    Families subclass it for their block type and implement
    ``attention_output``, ``mlp``, ``mlp_output`` and ``mlp_linears``;
    ``module`` is the block's ``nn.Module`` (its parameters, train mode,
    activation checkpointing), whose ``norm1`` and ``norm2`` are the
    block's norms; ``attention`` its attention view (with the block's
    projection hook).
    """

    module: nn.Module
    attention: AttentionView
    projection_hook: Optional[ProjectionHook] = None
    mlp_hook: Optional[MLPHook] = None

    @property
    def norm1(self) -> nn.Module:
        return self.module.norm1

    @property
    def norm2(self) -> nn.Module:
        return self.module.norm2

    # ---- what a family implements ------------------------------------------
    def attention_output(self, out: Tensor) -> Tensor:
        """An attention output on its way into the residual stream."""
        raise NotImplementedError

    @property
    def mlp_linears(self) -> Dict[str, nn.Linear]:
        """The MLP's linear projections by name, in the order the MLP
        applies them."""
        raise NotImplementedError

    def mlp(self, h: Tensor) -> Tensor:
        """MLP(h) of normed tokens h, with the projection hook's updates of
        the MLP's linears (``linear``)."""
        raise NotImplementedError

    def mlp_output(self, out: Tensor) -> Tensor:
        """An MLP output on its way into the residual stream."""
        raise NotImplementedError

    # ---- the block --------------------------------------------------------
    def linear(self, name: str, x: Tensor) -> Tensor:
        """The MLP's linear ``name`` of x, plus the projection hook's
        update where it has one."""
        return with_update(self.projection_hook, name, x,
                           self.mlp_linears[name](x))

    @property
    def mlp_hooked(self) -> bool:
        """Whether the projection hook adapts one of the MLP's linears (the
        MLP then runs through ``linear``; else as its module)."""
        hook = self.projection_hook
        return hook is not None and bool(set(hook.targets) &
                                         set(self.mlp_linears))

    def self_attention(self, h: Tensor) -> Tensor:
        """SA(h) of normed tokens h (B, N, D), before ``attention_output``."""
        return self_attention(self.attention, h)

    def attention_residual(self, x: Tensor) -> Tensor:
        """x + SA(norm1(x)), through ``attention_output``."""
        return x + self.attention_output(self.self_attention(self.norm1(x)))

    def mlp_residual(self, x: Tensor, h: Optional[Tensor] = None) -> Tensor:
        """x + MLP(h) (+ the MLP hook's g(x)), h = norm2(x) unless given."""
        out = x + self.mlp_output(self.mlp(self.norm2(x) if h is None else h))
        return out if self.mlp_hook is None else out + self.mlp_hook(x)

    def __call__(self, x: Tensor) -> Tensor:
        """The block (with its hooks)."""
        return self.mlp_residual(self.attention_residual(x))

    def at(self, tokens: Tokens) -> 'Block':
        """The block for a forward over ``tokens``: rotary attentions are
        bound to the tokens' rotary embedding (a shallow copy), others are
        the block itself."""
        if not self.attention.rotary:
            return self
        block = copy.copy(self)
        block.attention = self.attention.bound(tokens.rope)
        return block

    # ---- hooks ------------------------------------------------------------
    @property
    def projection_targets(self) -> Tuple[str, ...]:
        """The names a projection hook can target in this block."""
        return PROJECTIONS + tuple(self.mlp_linears)

    def check_targets(self, targets, owner: str = 'projection hook') -> None:
        """Every name of ``targets`` is a projection of this block."""
        unknown = sorted(set(targets) - set(self.projection_targets))
        if unknown:
            raise ValueError(
                f'{owner} targets {unknown} are not projections of this '
                f'ViT: its blocks have {self.projection_targets}')

    def projection_shape(self, target: str) -> Tuple[int, int]:
        """(out, in) features of projection ``target``."""
        if target in PROJECTIONS:
            dims = self.attention.embed_dim
            return dims, dims
        linear = self.mlp_linears[target]
        return linear.out_features, linear.in_features

    def add_to_weight(self, target: str, delta: Tensor) -> None:
        """W_t += delta in the block's own weights (call under
        ``torch.no_grad``): merges a projection hook's update."""
        if target in PROJECTIONS:
            self.attention.add_to_projection(target, delta)
        else:
            self.mlp_linears[target].weight += delta

    def with_hooks(self, projection: Optional[ProjectionHook] = None,
                   mlp: Optional[MLPHook] = None) -> 'Block':
        """This block with a method's hooks (a shallow copy: the same
        modules); projection targets it does not have are an error."""
        if projection is not None:
            self.check_targets(projection.targets)
        block = copy.copy(self)
        block.projection_hook = projection
        block.mlp_hook = mlp
        block.attention = self.attention.with_hook(projection)
        return block

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


class FrozenViTFamily(BaseModule):
    """A frozen ViT behind the family interface: subclass it for a new ViT
    implementation (docs/architecture.md shows a minimal one).

    Members a subclass sets in ``__init__`` (``check_family`` names those
    missing):

    * ``blocks``: a :class:`Block` view per block, built once;
    * ``out_indices`` (list of block indices), ``final_norm``,
      ``output_cls_token``, ``out_origin``: the outputs;
    * ``pretrained_keys``: the ViT's own state-dict keys (what a base
      checkpoint holds);
    * ``checkpoint``: its weights file, read by ``init_weights``, or None;
    * ``embed_dims``, ``patch_size``, ``num_prefix_tokens`` (attributes or
      properties).
    """

    #: the members every family sets (see the class docstring)
    MEMBERS = ('blocks', 'out_indices', 'final_norm', 'output_cls_token',
               'out_origin', 'pretrained_keys', 'checkpoint', 'embed_dims',
               'patch_size', 'num_prefix_tokens')

    blocks: List[Block]
    out_indices: List[int]
    final_norm: bool
    output_cls_token: bool
    out_origin: bool
    pretrained_keys: FrozenSet[str]
    checkpoint: Optional[str]

    def check_family(self) -> None:
        """Every member of the contract is there."""
        missing = [name for name in self.MEMBERS if not hasattr(self, name)]
        if missing:
            raise TypeError(
                f'{type(self).__name__} is a FrozenViTFamily without '
                f'{missing}: set them in its __init__ (see FrozenViTFamily)')

    @abstractmethod
    def embed(self, images: Tensor) -> Tokens:
        """Tokens from images (B, 3, H, W): patch embedding, prefix tokens
        (class token, registers) and position embedding."""

    @abstractmethod
    def final_normed(self, x: Tensor) -> Tensor:
        """The last block's output through the final norm where
        ``final_norm`` asks for it."""

    @abstractmethod
    def checkpoint_weights(self, state_dict: dict,
                           prefix: Optional[str] = None) -> dict:
        """A checkpoint's ViT tensors in this family's keys (position
        embedding resized): how a base checkpoint is read back."""

    @abstractmethod
    def load_pretrained(self, checkpoint: str,
                        prefix: Optional[str] = None) -> None:
        """Load a ViT checkpoint strictly: missing or misshapen ViT weights
        raise, naming the file."""

    def feature_map(self, tokens: Tokens) -> Union[Tensor, List[Tensor]]:
        """An output: the patch tokens as a (B, D, h, w) map, with the class
        token where ``output_cls_token`` asks for it."""
        return tokens.feature_map(self.output_cls_token)
