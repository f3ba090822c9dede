"""CVPT: prompts enter through cross-attention (Cross Visual Prompt Tuning,
ICCV 2025, arXiv 2408.14961)."""
from typing import Callable, List, Optional, Tuple

from mmseg.registry import MODELS
from torch import Tensor, nn

from ..attention import (AttentionView, MultiheadAttentionView,
                         cross_attention, fold_prompts,
                         folded_cross_attention, folded_is_cheaper,
                         prefer_folded, prompt_keys_values)
from ..costs import Shape, frozen_macs
from ..families import Block, Tokens
from ..prompt_cache import grad_reaches, tensors_of
from .prompted_vit import FrozenViTBackbone

# ca(x, r) = r + CA(x): the folded form adds the residual r inside its
# output matrix product.
CrossAttn = Callable[[Tensor, Tensor], Tensor]


def _ca_first(block: Block, x: Tensor, ca: CrossAttn) -> Tensor:
    return block(ca(x, x))


def _ca_parallel(block: Block, x: Tensor, ca: CrossAttn) -> Tensor:
    return block.mlp_residual(ca(x, block.attention_residual(x)))


def _ca_after_attention(block: Block, x: Tensor, ca: CrossAttn) -> Tensor:
    x = block.attention_residual(x)
    return block.mlp_residual(ca(x, x))


def _ca_into_mlp(block: Block, x: Tensor, ca: CrossAttn) -> Tensor:
    x = block.attention_residual(x)
    return block.mlp_residual(x, ca(x, block.norm2(x)))


def _ca_last(block: Block, x: Tensor, ca: CrossAttn) -> Tensor:
    x = block(x)
    return ca(x, x)


# The paper's five places for the cross-attention CA(x) (raw x, no norm);
# SA(x) = SA(LN1(x)), MLP(x) = MLP(LN2(x)).
CA_POSITIONS = {
    1: _ca_first,  # x += CA(x); x += SA(x); x += MLP(x)
    2: _ca_parallel,  # x += SA(x) + CA(x); x += MLP(x)
    3: _ca_after_attention,  # x += SA(x); x += CA(x); x += MLP(x)
    4: _ca_into_mlp,  # x += SA(x); x += MLP'(LN2(x) + CA(x))
    5: _ca_last,  # x += SA(x); x += MLP(x); x += CA(x)
}
CA_WEIGHTS = ('shared', 'copy', 'random')


@MODELS.register_module()
class CVPTViT(FrozenViTBackbone):
    """Cross Visual Prompt Tuning of a frozen ViT.

    Prompts never join the token sequence (every layer leaves the tokens'
    layout as it is). Block i attends from its tokens to its prompts P_i
    (m x D); at the default ``ca_position=3``:

        x = x + SA(LN1(x))
        x = x + CA(x, P_i)
        CA = softmax(x W_q (P_i W_k)^T / sqrt(d)) P_i W_v W_o
        x = x + MLP(LN2(x))

    (per head, biases included). With ``ca_weights='shared'`` CA calls the
    block's own frozen self-attention projections: no copies, no extra
    parameters, nothing extra in the state dict.

    The prompts' side of CA (keys and values, or for small m the
    projections folded with them, see ``..attention``) is computed once per
    forward for the whole batch, and cached where no gradient reaches it
    and nothing is in train mode (``..prompt_cache``).

    Args:
        ca_position (int): where CA sits in the block, 1-5 (see
            ``CA_POSITIONS``). Default 3.
        ca_weights (str): 'shared' (the block's frozen self-attention
            weights), 'copy' (own weights initialised from the
            self-attention) or 'random' (own weights, random init).
        ca_trainable (bool, optional): whether own CA weights train. Defaults
            to True for 'copy' and 'random'; 'shared' weights are frozen.
        See ``FrozenViTBackbone`` for the other arguments.
    """

    def __init__(self,
                 ca_position: int = 3,
                 ca_weights: str = 'shared',
                 ca_trainable: Optional[bool] = None,
                 **kwargs):
        if ca_position not in CA_POSITIONS:
            raise ValueError(f'ca_position must be one of '
                             f'{sorted(CA_POSITIONS)}, got {ca_position!r}')
        if ca_weights not in CA_WEIGHTS:
            raise ValueError(f'ca_weights must be one of {CA_WEIGHTS}, got '
                             f'{ca_weights!r}')
        if ca_weights == 'shared' and ca_trainable:
            raise ValueError(
                "ca_trainable=True needs ca_weights='copy' or 'random': "
                'shared cross-attention weights are the frozen self-attention '
                'weights')
        super().__init__(**kwargs)
        self.ca_position = ca_position
        self.ca_weights = ca_weights
        self.block_with_ca = CA_POSITIONS[ca_position]
        self.ca_trainable = (ca_weights != 'shared'
                             and ca_trainable is not False)
        self.cross_attns = self._build_cross_attentions()
        self.cross_attn_views = [MultiheadAttentionView(cross_attn)
                                 for cross_attn in self.cross_attns or ()]
        self.vit_weights_loaded()

    def structure(self) -> dict:
        """Where CA sits and whether it has weights of its own ('copy' and
        'random' differ only in their initialisation)."""
        own = 'shared' if self.ca_weights == 'shared' else 'own'
        return dict(super().structure(), ca_position=self.ca_position,
                    ca_weights=own)

    def _build_cross_attentions(self) -> Optional[nn.ModuleList]:
        if self.ca_weights == 'shared' or self.num_prompts == 0:
            return None
        cross_attns = nn.ModuleList()
        for block in self.vit.blocks[:self.prompt_depth]:
            source = block.attention
            if not source.plain:
                raise NotImplementedError(
                    f"ca_weights={self.ca_weights!r} gives each layer an "
                    'nn.MultiheadAttention of its own, without the q / k '
                    'norms, rotary embedding or output norm of this '
                    "backbone's attention: use ca_weights='shared'")
            cross_attns.append(
                nn.MultiheadAttention(
                    source.embed_dim,
                    source.num_heads,
                    bias=source.in_proj_bias is not None,
                    batch_first=True))
        cross_attns.requires_grad_(self.ca_trainable)
        return cross_attns

    def vit_weights_loaded(self) -> None:
        """'copy' mode: CA weights start as the loaded self-attention's."""
        if self.ca_weights != 'copy' or self.cross_attns is None:
            return
        for block, cross_attn in zip(self.vit.blocks, self.cross_attns):
            cross_attn.load_state_dict(block.attention.state_dict())

    def prompt_attention(self, index: int, tokens: Tokens) -> AttentionView:
        """The cross-attention's weights: the block's own self-attention
        ('shared') or the layer's own ('copy', 'random')."""
        if self.cross_attns is None:
            return super().prompt_attention(index, tokens)
        return self.cross_attn_views[index]

    def block_without_prompts(self, index: int, block: Block,
                              tokens: Tokens) -> Tuple[Tensor, Tokens]:
        """The block with CA(x, P) = 0, and the input x of its CA."""
        queries = []

        def no_prompts(x: Tensor, residual: Tensor) -> Tensor:
            queries.append(x)
            return residual

        x = self.block_with_ca(block, tokens.x, no_prompts)
        return queries[0], tokens.replace_x(x)

    def forward_block(self, index: int, block: Block, tokens: Tokens,
                      prompts: List[Tensor]) -> Tokens:
        if index >= len(prompts):
            return tokens.replace_x(block(tokens.x))
        mha = self.prompt_attention(index, tokens)
        ca = self.prompt_cross_attention(index, mha, prompts,
                                         block.output_scale)

        def observed(x: Tensor, residual: Tensor) -> Tensor:
            self.observe_prompt_queries(index, x, mha)
            return ca(x, residual)

        return tokens.replace_x(self.block_with_ca(block, tokens.x, observed))

    def prompt_cross_attention(self, index: int, mha: AttentionView,
                               prompts: List[Tensor],
                               scale: Optional[Tensor] = None) -> CrossAttn:
        """(x, r) -> r + gamma CA(x, P_i), gamma the block's layer scale
        (``scale``) where it has one; the prompts' side computed (or
        cached) once."""
        scales = () if scale is None else (scale, )
        fold = prefer_folded(mha, self.num_prompts, grad_reaches(
            tensors_of(self.prompts, mha) + list(scales)))
        if fold:  # the operands depend on mha.training (b_o folded or not)
            operands = self.cached_prompt_side(
                index, (mha, ), lambda: fold_prompts(mha, prompts[index],
                                                     scale),
                tag=(fold, mha.training), tensors=scales)
            return lambda x, residual: folded_cross_attention(
                mha, x, operands, residual)
        keys, values = self.cached_prompt_side(
            index, (mha, ), lambda: prompt_keys_values(mha, prompts[index]),
            tag=(fold, mha.training))
        return lambda x, residual: cross_attention(mha, x, keys, values,
                                                   residual, scale)


# ---- cost (docs/performance.md) -------------------------------------------
def cvpt_macs(s: Shape) -> Tuple[int, int]:
    """(train step, inference) multiply-adds of CVPT (``cvpt_step_macs``)."""
    return cvpt_step_macs(s, with_grad=True), cvpt_step_macs(s, False)


def cvpt_step_macs(s: Shape, with_grad: bool) -> int:
    """CVPT at position 3 with shared weights, in the form (folded or not)
    that ``prefer_folded`` picks. Per image and layer, N tokens:

    * folded: x M and A U, 2 N H m D forward, 4 N H m D backward (gradients
      of x, M, A and U; at layer 1 x needs none); folding 4 m D^2 + m D;
    * unfolded: W_q, W_o and attention to m keys, 2 N D^2 + 2 N m D
      forward, 2 N D^2 + 5 N m D backward (at layer 1 W_q's input needs
      none); the prompts' keys and values 2 m D^2.

    The prompts' side is computed once per step and differentiated (as much
    again); inference uses the cached one. Layer 1's self-attention needs
    no gradient (its input needs none).
    """
    num, m, dims = s.tokens, s.prompts, s.dims
    if folded_is_cheaper(dims, s.heads, m, with_grad):
        forward = 2 * num * s.heads * m * dims
        backward = 4 * num * s.heads * m * dims
        layer1_without = num * s.heads * m * dims
        prompt_side = 4 * m * dims**2 + m * dims
    else:
        forward = 2 * num * dims**2 + 2 * num * m * dims
        backward = 2 * num * dims**2 + 5 * num * m * dims
        layer1_without = num * dims**2
        prompt_side = 2 * m * dims**2
    train, infer = frozen_macs(s)
    blocks = s.batch * s.layers
    if not with_grad:
        return infer + blocks * forward
    layer1_attention = 4 * num * dims**2 + 5 * num**2 * dims
    return (train + blocks * (forward + backward)
            - s.batch * (layer1_attention + layer1_without)
            + 2 * s.layers * prompt_side)
