"""VPT: prompts inserted into the token sequence (Jia et al., ECCV 2022)."""
from typing import List, Tuple

import torch
from mmcv.cnn.bricks.drop import DropPath
from mmseg.registry import MODELS
from torch import Tensor, nn
from torch.nn.modules.dropout import _DropoutNd

from ..attention import packed_keys_values, self_attention_with_prompts
from ..costs import (Shape, block_backward, block_forward, embedding,
                     sequence_macs)
from ..families import Block, Tokens
from .prompted_vit import FrozenViTBackbone

PROMPT_FORMS = ('auto', 'reference')


def drop_rate(module: nn.Module) -> float:
    """The rate at which a module drops out, 0 for other modules."""
    if isinstance(module, _DropoutNd):
        return module.p
    if isinstance(module, DropPath):
        return module.drop_prob
    if isinstance(module, nn.MultiheadAttention):
        return module.dropout
    return 0.


def drops_out(module: nn.Module) -> bool:
    """Whether the module draws random masks (train mode, a rate > 0)."""
    return any(m.training and drop_rate(m) > 0 for m in module.modules())


@MODELS.register_module()
class VPTViT(FrozenViTBackbone):
    """Visual Prompt Tuning of a frozen ViT.

    The m prompts of layer i enter the sequence right after the prefix
    tokens (class token) and replace the previous layer's prompt outputs
    (no position embedding):

        x_0 = [cls, P_0, patches],  x_i = [x_{i-1}[:1], P_i, x_{i-1}[1 + m:]]

    With ``prompt_depth='shallow'`` only P_0 is inserted and its outputs
    travel through all later layers.

    Where the outputs of layer i at the prompts are never used (deep: every
    layer; depth k < L: layers 0..k-2; shallow: none, since its prompt
    outputs flow on) the image tokens x (class token and patches) only see
    the prompts as keys and values, so ``prompt_form='auto'`` computes just

        x += softmax(Q [K; K^P]^T / sqrt(d)) [V; V^P] W_o^T + b_o,
        x += MLP(LN2(x)),

    Q, K, V from LN1(x) and K^P = LN1(P_i) W_k^T + b_k,
    V^P = LN1(P_i) W_v^T + b_v computed once per forward for the whole
    batch (cached in eval mode): no queries, attention rows or MLP for the
    prompts, and the layer leaves no prompt tokens in the sequence. The
    outputs are the same, except that a block which drops out (in train
    mode with a positive dropout or drop-path rate: only with
    ``frozen_eval=False``) would draw its masks over other tokens, so it
    keeps the reference form. Prompt dropout acts on the prompts before
    either form, and prompts from any provider get the fast form alike.

    Args:
        prompt_form (str): 'auto' (the form above wherever it gives the same
            outputs) or 'reference' (every prompted layer runs on the whole
            sequence [cls, P_i, patches], as written above). Default 'auto'.
        prompt_cfg (dict): defaults to VPT's uniform init,
            ``dict(type='LayerPrompts', init='uniform')``.
        See ``FrozenViTBackbone`` for the other arguments.
    """

    default_prompt_cfg = dict(type='LayerPrompts', init='uniform')

    def __init__(self, prompt_form: str = 'auto', **kwargs):
        if prompt_form not in PROMPT_FORMS:
            raise ValueError(f'prompt_form must be one of {PROMPT_FORMS}, '
                             f'got {prompt_form!r}')
        super().__init__(**kwargs)
        self.prompt_form = prompt_form

    @property
    def num_unread_prompt_layers(self) -> int:
        """How many leading layers have prompt outputs that nothing reads:
        all prompted layers when every layer is prompted, else all but the
        last (whose prompt outputs flow on as tokens)."""
        if self.prompt_form == 'reference':
            return 0
        if self.prompt_depth == len(self.vit.blocks):
            return self.prompt_depth
        return self.prompt_depth - 1

    def prompts_as_keys_only(self, index: int) -> bool:
        """Whether layer ``index`` runs the prompts-as-keys form."""
        return (index < self.num_unread_prompt_layers
                and not drops_out(self.vit.blocks[index].module))

    def forward_block(self, index: int, block: Block, tokens: Tokens,
                      prompts: List[Tensor]) -> Tokens:
        """Unprompted layers run as they are (prompt outputs of the last
        prompted layer flow on); prompted ones drop the previous layer's
        prompt tokens and see P_i as keys and values only (leaving no
        prompt tokens) or as tokens [prefix, P_i, patches] (leaving m)."""
        if index >= len(prompts):
            return tokens.replace_x(block(tokens.x))
        if self.prompts_as_keys_only(index):
            x = tokens.without_prompts()
            keys_values = self.prompt_keys_values(index, block, prompts)
            h = self._observed_norm1(index, block, x)
            out = self_attention_with_prompts(block.attention, h, keys_values)
            x = block.mlp_residual(x + block.attention_output(out))
            return tokens.replace_x(x, num_prompts=0)
        layer_prompts = prompts[index].expand(tokens.x.shape[0], -1, -1)
        x = torch.cat((tokens.prefix, layer_prompts, tokens.patches), dim=1)
        h = self._observed_norm1(index, block, x)
        x = block.mlp_residual(
            x + block.attention_output(block.self_attention(h)))
        return tokens.replace_x(x, num_prompts=self.num_prompts)

    def _observed_norm1(self, index: int, block: Block, x: Tensor) -> Tensor:
        """LN1(x): the tokens that query the prompts, told to the add-ons."""
        h = block.norm1(x)
        self.observe_prompt_queries(index, h, block.attention)
        return h

    def prompt_keys_values(self, index: int, block: Block,
                           prompts: List[Tensor]) -> Tensor:
        """[K^P, V^P] of layer ``index``, (m, 2 D), computed (or cached) once
        for the whole batch."""
        return self.cached_prompt_side(
            index, (block.norm1, block.attention),
            lambda: packed_keys_values(block.attention,
                                       block.norm1(prompts[index])))

    def block_without_prompts(self, index: int, block: Block,
                              tokens: Tokens) -> Tuple[Tensor, Tokens]:
        """The prompts are keys of the self-attention, queried by LN1(x)."""
        return block.norm1(tokens.x), tokens.replace_x(block(tokens.x))


# ---- cost (docs/performance.md) -------------------------------------------
def vpt_reference_macs(s: Shape) -> Tuple[int, int]:
    """(train step, inference) multiply-adds of VPT-deep's reference form:
    every block on [cls, P, patches], N + m tokens."""
    return sequence_macs(s, s.tokens + s.prompts)


def vpt_macs(s: Shape) -> Tuple[int, int]:
    """(train step, inference) of fast VPT-deep: N queries attend to N + m
    keys. The prompts' keys and values, 2 m D^2 a layer, once per step
    (cached for inference) and as much again for their gradient; layer 1's
    W_q, W_k, W_v need no gradient to their input (the embeddings need
    none)."""
    num, keys, blocks = s.tokens, s.tokens + s.prompts, s.batch * s.layers
    prompt_side = 2 * s.prompts * s.dims**2
    infer = embedding(s) + blocks * block_forward(s, num, keys)
    backward = (blocks * block_backward(s, num, keys)
                - s.batch * 3 * num * s.dims**2)
    return infer + backward + 2 * s.layers * prompt_side, infer
