"""Multi-head attention computed from the packed weights of an
``nn.MultiheadAttention`` (``in_proj_weight`` = [W_q; W_k; W_v], ``out_proj``).

mmseg's ViT calls ``nn.MultiheadAttention`` with ``need_weights=True``, which
takes PyTorch's slow explicit path. These functions reuse the very same
parameters (nothing is copied) and run
``torch.nn.functional.scaled_dot_product_attention``:

    Attn(Q, K, V) = concat_h softmax(Q_h K_h^T / sqrt(d)) V_h  W_o^T + b_o

``self_attention_with_prompts`` is the self-attention of tokens x whose keys
and values also include m prompts' (VPT's prompts as seen by the image
tokens), the prompts' keys and values computed once for the whole batch
(``packed_keys_values``).

Cross-attention to m prompts (keys and values shared by the whole batch)
comes in two exact forms:

* unfolded: project the queries, attend, project the output; per token
  2 D^2 + 2 m D multiply-adds;
* folded: per head h, Q_h K_h^T / sqrt(d) = x M_h + c_h with
  M_h = W_q^h^T K_h^T / sqrt(d), c_h = b_q^h K_h^T / sqrt(d), and
  concat_h(A_h V_h) W_o^T = sum_h A_h U_h with U_h = V_h W_o^h^T, so that
  logits = x M + c (M: D x H m) and CA = A U + b_o (U: H m x D); per token
  2 H m D multiply-adds. Each A_h's rows sum to 1, so b_o folds into U as
  well (U_h + b_o / H) unless attention dropout is active.

``prefer_folded`` picks the cheaper one from the shapes. Both forms take an
optional ``residual`` r and return r + CA(x); the folded form adds it inside
its output matrix product (``torch.addmm``), saving two passes over the
tokens.

An attention is read through an :class:`AttentionView`, whose optional
extras are declared attributes (None or False where the attention has
none; nothing is probed for):

* ``q_norm``, ``k_norm``: per-head norms of the queries and keys (timm's
  q / k-normed ViTs, EVA-02 has none);
* ``rotary``: the patch tokens' queries and keys are rotated by the rotary
  embedding ``rope`` of the forward the view is bound to (EVA-02's RoPE);
  the patches are the last tokens of the sequence, and prefix tokens and
  prompts are never rotated;
* ``out_norm``: a norm of the merged heads before W_o (EVA's sub-LN);
* ``projection_hook``: a method's additions to the projections' outputs
  (:class:`ProjectionHook`; LoRA: x W^T + b + s drop(x) A^T B^T),

so that q = rotate(q_norm(x W_q^T + b_q)) for the token stream x,
k = rotate(k_norm(x W_k^T + b_k)) for its keys and k_norm(P W_k^T + b_k)
for prompts', and the output is out_norm(A V) W_o^T + b_o. One notion
decides the fast forms: ``extras``, the set of those present. The folded
form needs logits linear in x and an output linear in A, with the packed
weights as they are (``foldable``: none of q_norm, rotary, out_norm and a
projection hook); an attention that is its projections alone (``plain``:
no extras) is what an ``nn.MultiheadAttention`` of its own can stand in
for. Prompts as keys and values (``self_attention_with_prompts``) apply to
every view.

Every function here takes a view or an ``nn.MultiheadAttention`` (read
through :func:`attention_view`).
"""
import copy
from typing import FrozenSet, List, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn


#: the projections of an attention: q, k, v (the packed in-projection's
#: rows) and o (out_proj)
PROJECTIONS = ('q', 'k', 'v', 'o')


class ProjectionHook:
    """What a method adds to a block's linear projections: for each of
    its ``targets`` t (q, k, v, o of the attention; the MLP's own linear
    names, e.g. fc1 and fc2), y_t = x W_t^T + b_t + u_t(x)."""

    targets: Tuple[str, ...] = ()

    def add_update(self, target: str, x: Tensor, out: Tensor) -> Tensor:
        """``out`` (x W_t^T + b_t, projection ``target`` of x) plus the
        update u_t(x); a hook may let the product that makes u_t add
        ``out`` itself (``LowRankUpdates``)."""
        raise NotImplementedError


def with_update(hook: Optional[ProjectionHook], target: str, x: Tensor,
                out: Tensor) -> Tensor:
    """``out``, projection ``target`` of x, plus ``hook``'s update where
    the hook targets it."""
    if hook is None or target not in hook.targets:
        return out
    return hook.add_update(target, x, out)


class AttentionView:
    """A multi-head attention read as ``nn.MultiheadAttention``'s packed
    projections: ``in_proj_weight`` [W_q; W_k; W_v] (3 D x D),
    ``in_proj_bias`` (3 D) or None, ``out_proj`` (a Linear), ``num_heads``,
    ``embed_dim``, ``dropout`` (of the attention probabilities), ``training``
    and ``module`` (the attention's ``nn.Module``), plus the declared extras
    of the module docstring. Built once per block by its family; ``bound``
    and ``with_hook`` give shallow copies (the same weights)."""

    module: nn.Module
    q_norm: Optional[nn.Module] = None
    k_norm: Optional[nn.Module] = None
    out_norm: Optional[nn.Module] = None
    rotary: bool = False
    rope: Optional[Tensor] = None
    projection_hook: Optional[ProjectionHook] = None

    # ---- the weights (families implement these for their modules) ---------
    @property
    def in_proj_weight(self) -> Tensor:
        raise NotImplementedError

    @property
    def in_proj_bias(self) -> Optional[Tensor]:
        raise NotImplementedError

    @property
    def out_proj(self) -> nn.Module:
        raise NotImplementedError

    @property
    def num_heads(self) -> int:
        raise NotImplementedError

    @property
    def dropout(self) -> float:
        raise NotImplementedError

    def projection_weight(self, target: str) -> Tensor:
        """W_t itself (a view of the attention's own weight, written in
        place by ``add_to_projection``), t in ``PROJECTIONS``: out_proj's
        weight for 'o', the rows of the packed in-projection for q, k, v
        (a family whose q, k, v weights are separate tensors overrides
        this)."""
        if target == 'o':
            return self.out_proj.weight
        start = PROJECTIONS.index(target) * self.embed_dim
        return self.in_proj_weight[start:start + self.embed_dim]

    def add_to_projection(self, target: str, delta: Tensor) -> None:
        """W_t += delta in the attention's own weights, t in
        ``PROJECTIONS`` (call under ``torch.no_grad``)."""
        self.projection_weight(target).add_(delta)

    def rotate(self, t: Tensor) -> Tensor:
        """The rotary embedding of the last tokens of t (..., N, H, d) (the
        patches), for a ``rotary`` view bound to a forward's ``rope``."""
        raise NotImplementedError(f'{type(self).__name__} does not rotate')

    # ---- derived ----------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        return self.out_proj.out_features

    @property
    def training(self) -> bool:
        return self.module.training

    @property
    def extras(self) -> FrozenSet[str]:
        """The extras this attention has, among q_norm, k_norm, rotary,
        out_norm and projection_hook."""
        present = (('q_norm', self.q_norm), ('k_norm', self.k_norm),
                   ('rotary', self.rotary or None),
                   ('out_norm', self.out_norm),
                   ('projection_hook', self.projection_hook))
        return frozenset(name for name, value in present
                         if value is not None)

    @property
    def foldable(self) -> bool:
        """Whether cross-attention to prompts folds into the projections
        (see ``fold_prompts``): no q norm, rotary embedding, output norm
        or projection hook."""
        return not self.extras & {'q_norm', 'rotary', 'out_norm',
                                  'projection_hook'}

    @property
    def plain(self) -> bool:
        """Whether the attention is its projections alone, as an
        ``nn.MultiheadAttention``."""
        return not self.extras

    def bound(self, rope: Optional[Tensor]) -> 'AttentionView':
        """This view for a forward whose patches rotate by ``rope``."""
        view = copy.copy(self)
        view.rope = rope
        return view

    def with_hook(self, hook: Optional[ProjectionHook]) -> 'AttentionView':
        """This view with a method's projection hook."""
        view = copy.copy(self)
        view.projection_hook = hook
        return view

    def parameters(self):
        """The attention's tensors and its hook's, which its results
        depend on (``..prompt_cache`` keys on them)."""
        yield from self.module.parameters()
        if isinstance(self.projection_hook, nn.Module):
            yield from self.projection_hook.parameters()

    def buffers(self):
        yield from self.module.buffers()

    def state_dict(self) -> dict:
        """The weights under ``nn.MultiheadAttention``'s names."""
        state = dict(in_proj_weight=self.in_proj_weight,
                     **{f'out_proj.{k}': v
                        for k, v in self.out_proj.state_dict().items()})
        if self.in_proj_bias is not None:
            state['in_proj_bias'] = self.in_proj_bias
        return state


class MultiheadAttentionView(AttentionView):
    """An ``nn.MultiheadAttention`` (batch first), which has no extras: its
    own packed weights."""

    def __init__(self, module: nn.MultiheadAttention):
        self.module = module

    @property
    def in_proj_weight(self) -> Tensor:
        return self.module.in_proj_weight

    @property
    def in_proj_bias(self) -> Optional[Tensor]:
        return self.module.in_proj_bias

    @property
    def out_proj(self) -> nn.Module:
        return self.module.out_proj

    @property
    def num_heads(self) -> int:
        return self.module.num_heads

    @property
    def embed_dim(self) -> int:
        return self.module.embed_dim

    @property
    def dropout(self) -> float:
        return self.module.dropout


#: what the functions below take
Attention = Union[AttentionView, nn.MultiheadAttention]


def attention_view(attention: Attention) -> AttentionView:
    """``attention`` as a view (an ``nn.MultiheadAttention`` wrapped)."""
    if isinstance(attention, AttentionView):
        return attention
    if isinstance(attention, nn.MultiheadAttention):
        return MultiheadAttentionView(attention)
    raise TypeError(f'an AttentionView or nn.MultiheadAttention, not '
                    f'{type(attention).__name__}')


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(..., N, D) -> (..., H, N, D / H)."""
    *lead, n, dims = x.shape
    return x.reshape(*lead, n, num_heads, dims // num_heads).transpose(-3, -2)


def merge_heads(x: Tensor) -> Tensor:
    """(..., H, N, d) -> (..., N, H * d)."""
    x = x.transpose(-3, -2)
    return x.reshape(*x.shape[:-2], -1)


def packed_projection(attention: AttentionView, x: Tensor, start: int,
                      stop: int) -> Tensor:
    """Rows ``start:stop`` of the frozen packed projection:
    x W[start:stop]^T + b[start:stop]."""
    bias = attention.in_proj_bias
    return F.linear(x, attention.in_proj_weight[start:stop],
                    None if bias is None else bias[start:stop])


def _rows(attention: AttentionView, names: str) -> Tuple[int, int]:
    """The rows of the consecutive projections ``names`` (among 'qkv') in
    the packed in-projection."""
    dims = attention.embed_dim
    start = 'qkv'.index(names[0]) * dims
    return start, start + len(names) * dims


def _adapted(attention: AttentionView, names: str) -> bool:
    hook = attention.projection_hook
    return hook is not None and bool(set(names) & set(hook.targets))


def _projections(attention: AttentionView, x: Tensor,
                 names: str) -> List[Tensor]:
    """x W_t^T + b_t for each projection t of ``names`` (consecutive among
    'qkv'), (..., D) each: views of one packed product, or, where the
    projection hook adapts some of them, one product each, the hook's
    update added to its targets' (exactly their multiply-adds, no
    in-place writes)."""
    if not _adapted(attention, names):
        return list(packed_projection(attention, x, *_rows(attention, names))
                    .split(attention.embed_dim, dim=-1))
    return [with_update(attention.projection_hook, name, x,
                        packed_projection(attention, x,
                                          *_rows(attention, name)))
            for name in names]


def _in_proj(attention: AttentionView, x: Tensor, names: str) -> Tensor:
    """The projections ``names`` of x, concatenated (..., len(names) D)."""
    if not _adapted(attention, names):
        return packed_projection(attention, x, *_rows(attention, names))
    return torch.cat(_projections(attention, x, names), dim=-1)


def _dropout_p(attention: AttentionView) -> float:
    return attention.dropout if attention.training else 0.


# ---- what some blocks add: q / k norms, rotary embedding, output norm -------
def token_queries(attention: AttentionView, q: Tensor,
                  rotate: bool = True) -> Tensor:
    """rotate(q_norm(q)) for per-head queries q (..., N, H, d) of the token
    stream (patches last); ``rotate=False`` for prefix tokens alone."""
    if attention.q_norm is not None:
        q = attention.q_norm(q)
    return attention.rotate(q) if rotate and attention.rotary else q


def token_keys(attention: AttentionView, k: Tensor) -> Tensor:
    """rotate(k_norm(k)) for per-head keys k (..., N, H, d) whose last
    tokens are the patches."""
    if attention.k_norm is not None:
        k = attention.k_norm(k)
    return attention.rotate(k) if attention.rotary else k


def output_of(attention: AttentionView, merged: Tensor) -> Tensor:
    """out_norm(A V) W_o^T + b_o of the merged heads (..., N, D) (plus the
    projection hook's update of o)."""
    if attention.out_norm is not None:
        merged = attention.out_norm(merged)
    return with_update(attention.projection_hook, 'o', merged,
                       attention.out_proj(merged))


def _heads(x: Tensor, num_heads: int) -> Tensor:
    """(..., N, D) -> (..., N, H, d): heads split, tokens still first."""
    return x.unflatten(-1, (num_heads, -1))


def queries_of(attention: Attention, x: Tensor,
               rotate: bool = True) -> Tensor:
    """q = W_q x + b_q for tokens x (..., N, D) (q norm and rotary
    embedding where the attention has them; ``rotate=False`` for prefix
    tokens alone, x (..., D))."""
    attention = attention_view(attention)
    q = _heads(_in_proj(attention, x, 'q'), attention.num_heads)
    return token_queries(attention, q, rotate).flatten(-2)


def query_key_vectors(attention: Attention, x: Tensor) -> Tensor:
    """z = W_k^T (W_q x + b_q) for tokens x (..., N, D), as rows: q W_k.

    The image-dependent part of the logit between a query token x and a key
    token p is z^T p (all heads together, before the 1 / sqrt(d) scale):
    (W_q x + b_q)^T (W_k p + b_k) = z^T p + q^T b_k. Only for keys linear
    in p: an attention with a key norm has no such z.
    """
    attention = attention_view(attention)
    if attention.k_norm is not None:
        raise ValueError(
            'this attention normalises its keys (k_norm), so its logits are '
            'not linear in the prompt and have no statistics z z^T: BPT '
            "(WhitenedPrompts, BilinearPrompts) cannot whiten its prompts; "
            "use prompt_cfg=dict(type='LayerPrompts') on q/k-normed models")
    dims = attention.embed_dim
    return queries_of(attention, x) @ attention.in_proj_weight[dims:2 * dims]


def _packed_qkv(attention: Attention,
                x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Q, K, V = x [W_q; W_k; W_v]^T + b for x (B, N, D), each (B, H, N, d),
    with q / k norms and rotary embedding where the attention has them.

    One packed projection; the heads are strided views of it (no copies
    without norms, rotation or a projection hook, which makes one product
    per projection: ``_projections``).
    """
    q, k, v = (_heads(t, attention.num_heads)
               for t in _projections(attention, x, 'qkv'))
    q, k = token_queries(attention, q), token_keys(attention, k)
    return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)


def _attend(attention: Attention, q: Tensor, k: Tensor,
            v: Tensor) -> Tensor:
    """SDPA of per-head (B, H, N, d) queries, keys and values, then the
    output (``output_of``); SDPA's output is already laid out as
    (B, N, H, d)."""
    out = F.scaled_dot_product_attention(
        q, k, v, dropout_p=_dropout_p(attention))
    return output_of(attention, merge_heads(out))


def self_attention(attention: Attention, x: Tensor) -> Tensor:
    """Self-attention of x (B, N, D): Q, K, V = x [W_q; W_k; W_v]^T + b."""
    attention = attention_view(attention)
    return _attend(attention, *_packed_qkv(attention, x))


def packed_keys_values(attention: Attention, x: Tensor) -> Tensor:
    """[K, V] = x [W_k; W_v]^T + [b_k; b_v] for x (..., D): (..., 2 D)."""
    attention = attention_view(attention)
    return _in_proj(attention, x, 'kv')


def self_attention_with_prompts(attention: Attention, x: Tensor,
                                prompt_kv: Tensor) -> Tensor:
    """Self-attention of x (B, N, D) that also attends to m prompts, given by
    their ``packed_keys_values`` ``prompt_kv`` = [K^P, V^P] (m, 2 D), shared
    by the batch:

        concat_h softmax(Q_h [K^P_h; K_h]^T / sqrt(d)) [V^P_h; V_h] W_o^T + b_o

    Q, K, V from x as in ``self_attention``. These are the rows of x in the
    self-attention of the sequence [x; P] (the order of the keys does not
    change a softmax); the prompts' own queries are not computed. Q and
    [K, V] are projected apart, so that only Q and [K^P; K], [V^P; V] (one
    concatenation) are kept for the backward. The prompts' keys come first,
    so that the patches' keys are the last, as a rotary embedding takes
    them (k_norm acts on every key alike).
    """
    attention = attention_view(attention)
    batch, _, dims = x.shape
    heads = attention.num_heads
    q = token_queries(attention, _heads(_in_proj(attention, x, 'q'), heads))
    kv = torch.cat((prompt_kv.expand(batch, -1, -1),
                    packed_keys_values(attention, x)), dim=1)
    k, v = kv.unflatten(-1, (2, heads, dims // heads)).unbind(2)
    k = token_keys(attention, k)
    return _attend(attention, q.transpose(1, 2), k.transpose(1, 2),
                   v.transpose(1, 2))


# ---- cross-attention to prompts, unfolded ----------------------------------
def prompt_keys_values(attention: Attention,
                       prompts: Tensor) -> Tuple[Tensor, Tensor]:
    """Keys and values of the prompts P (m, D), once for the whole batch.

    K = k_norm(P W_k^T + b_k) (no rotary embedding), V = P W_v^T + b_v,
    returned per head as (H, m, d).
    """
    attention = attention_view(attention)
    keys, values = packed_keys_values(attention, prompts).chunk(2, dim=-1)
    keys = _heads(keys, attention.num_heads)
    if attention.k_norm is not None:
        keys = attention.k_norm(keys)
    return keys.transpose(-3, -2), split_heads(values, attention.num_heads)


def cross_attention(attention: Attention,
                    x: Tensor,
                    keys: Tensor,
                    values: Tensor,
                    residual: Optional[Tensor] = None,
                    out_scale: Optional[Tensor] = None) -> Tensor:
    """Cross-attention of tokens x (B, N, D) to prompt keys/values (H, m, d).

    CA(x, P) = concat_h softmax(Q_h K_h^T / sqrt(d)) V_h W_o^T + b_o with
    Q = x W_q^T + b_q (``token_queries``: q norm and rotary embedding where
    the attention has them), the output through ``output_of``. K and V are
    shared by every image, so the B N tokens attend as one batch of
    queries: nothing is expanded per image. Returns ``residual`` + gamma
    CA(x, P) when a residual is given, gamma = ``out_scale`` (D,) (a layer
    scale) or 1.
    """
    attention = attention_view(attention)
    batch, num_tokens, dims = x.shape
    queries = token_queries(
        attention, _heads(_in_proj(attention, x, 'q'), attention.num_heads))
    queries = queries.reshape(1, batch * num_tokens, attention.num_heads, -1)
    out = F.scaled_dot_product_attention(
        queries.transpose(1, 2), keys[None], values[None],
        dropout_p=_dropout_p(attention))
    out = output_of(attention,
                    merge_heads(out).reshape(batch, num_tokens, dims))
    if out_scale is not None:
        out = out * out_scale
    return out if residual is None else residual + out


# ---- cross-attention to prompts, folded ------------------------------------
class FoldedPrompts(NamedTuple):
    """Prompts folded into the projections: CA = softmax_h(x M + c) U + b_o.

    ``logit_weight`` M^T (H m, D) and ``logit_bias`` c (H m) or None, in
    ``F.linear``'s layout; ``out_values`` U (H m, D), with b_o / H added to
    every row when ``out_bias`` is None, else ``out_bias`` b_o.
    """
    logit_weight: Tensor
    logit_bias: Optional[Tensor]
    out_values: Tensor
    out_bias: Optional[Tensor]


def fold_prompts(attention: Attention, prompts: Tensor,
                 out_scale: Optional[Tensor] = None) -> FoldedPrompts:
    """M, c and U of the folded form, for each head h:

        M_h = W_q^h^T K_h^T / sqrt(d), c_h = b_q^h K_h^T / sqrt(d),
        U_h = V_h W_o^h^T (+ b_o / H without attention dropout),

    U and b_o times gamma = ``out_scale`` (D,) when given (a layer scale on
    the output: gamma CA = sum_h A_h (U_h gamma) + b_o gamma).

    W_q^h (d, D) are the rows of head h in W_q; W_o^h (D, d) its columns in
    W_o. Costs 4 m D^2 multiply-adds per layer, independent of the batch.
    Fold in the mode the result is used in: b_o is folded only when the
    attention probabilities are not dropped out. Only for an attention
    ``foldable``.
    """
    attention = attention_view(attention)
    if not attention.foldable:
        raise ValueError('fold_prompts: this attention has a q norm, rotary '
                         'embedding, output norm or projection hook, which '
                         'do not fold; use cross_attention')
    dims, heads = attention.embed_dim, attention.num_heads
    head_dims = dims // heads
    keys, values = prompt_keys_values(attention, prompts)  # (H, m, d)
    keys = keys * head_dims**-0.5
    w_q = attention.in_proj_weight[:dims].view(heads, head_dims, dims)
    logit_weight = torch.matmul(keys, w_q).flatten(0, 1)  # (H m, D)
    logit_bias = None
    if attention.in_proj_bias is not None:
        b_q = attention.in_proj_bias[:dims].view(heads, head_dims, 1)
        logit_bias = torch.matmul(keys, b_q).flatten()  # (H m)
    w_o = attention.out_proj.weight.view(dims, heads,
                                         head_dims).permute(1, 2, 0)
    out_values = torch.matmul(values, w_o).flatten(0, 1)  # U: (H m, D)
    out_bias = attention.out_proj.bias
    if out_bias is not None and _dropout_p(attention) == 0:
        out_values = out_values + out_bias / heads
        out_bias = None
    if out_scale is not None:
        out_values = out_values * out_scale
        out_bias = None if out_bias is None else out_bias * out_scale
    return FoldedPrompts(logit_weight, logit_bias, out_values, out_bias)


def short_row_softmax(logits: Tensor) -> Tensor:
    """softmax(z) = exp(z - max z) / sum exp(z - max z), in four passes."""
    probs = (logits - logits.amax(-1, keepdim=True)).exp_()
    return probs.div_(probs.sum(-1, keepdim=True))


class ShortRowSoftmax(torch.autograd.Function):
    """softmax over a short last dim, from element-wise ops.

    softmax(z) = exp(z - max z) / sum exp(z - max z);
    d z = p * (g - sum(p * g)).
    torch's CPU softmax kernel vectorises only rows of 16 or more: on rows
    of 10 (ten prompts per head) it is about 4x slower than these four
    element-wise passes, forward and backward.
    """

    @staticmethod
    def forward(ctx, logits: Tensor) -> Tensor:
        probs = short_row_softmax(logits)
        ctx.save_for_backward(probs)
        return probs

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        probs, = ctx.saved_tensors
        grad_logits = probs * grad
        return grad_logits.sub_(probs * grad_logits.sum(-1, keepdim=True))


def head_softmax(logits: Tensor) -> Tensor:
    """Softmax over the last dim, by the faster kernel for its length."""
    if logits.device.type != 'cpu' or logits.shape[-1] >= 16:
        return logits.softmax(-1)
    if torch.is_grad_enabled() and logits.requires_grad:
        return ShortRowSoftmax.apply(logits)
    return short_row_softmax(logits)  # no autograd node to build


def folded_cross_attention(attention: Attention,
                           x: Tensor,
                           folded: FoldedPrompts,
                           residual: Optional[Tensor] = None) -> Tensor:
    """CA(x, P) = sum_h softmax(x M_h + c_h) U_h + b_o for x (B, N, D), plus
    ``residual`` when given (added by the output matrix product itself)."""
    attention = attention_view(attention)
    logits = F.linear(x, folded.logit_weight, folded.logit_bias)
    probs = head_softmax(logits.unflatten(-1, (attention.num_heads, -1)))
    probs = probs.flatten(-2)
    if _dropout_p(attention) > 0:
        if folded.out_bias is None and attention.out_proj.bias is not None:
            raise ValueError(
                'these prompts were folded without attention dropout (b_o '
                'is inside U) but the attention now drops out: call '
                'fold_prompts in the mode the result is used in')
        probs = F.dropout(probs, _dropout_p(attention))
    if residual is None:
        out = torch.matmul(probs, folded.out_values)
    else:
        out = torch.addmm(residual.flatten(0, -2), probs.flatten(0, -2),
                          folded.out_values).view_as(residual)
    return out if folded.out_bias is None else out + folded.out_bias


def prefer_folded(attention: Attention, num_prompts: int,
                  with_grad: bool) -> bool:
    """Whether to run the folded form: only for an attention that is
    ``foldable``, where it costs fewer multiply-adds
    (``folded_is_cheaper``)."""
    attention = attention_view(attention)
    return attention.foldable and folded_is_cheaper(
        attention.embed_dim, attention.num_heads, num_prompts, with_grad)


def folded_is_cheaper(dims: int, heads: int, num_prompts: int,
                      with_grad: bool) -> bool:
    """Whether the folded form costs fewer multiply-adds per token.

    Forward: folded 2 H m D vs unfolded 2 D^2 + 2 m D (break-even
    m = D / (H - 1)). With gradients to the prompts (weights frozen) the
    backward adds 4 H m D (folded: gradients of x, M, U) vs 2 D^2 + 4 m D, so
    break-even moves to m = 2 D / (3 (H - 1)).
    """
    m = num_prompts
    if with_grad:
        return 6 * heads * m * dims < 4 * dims * dims + 6 * m * dims
    return heads * m * dims < dims * dims + m * dims
