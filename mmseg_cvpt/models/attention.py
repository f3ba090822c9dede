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

Some blocks add to the projections (timm's EVA-02 and q / k-normed ViTs;
``nn.MultiheadAttention`` adds nothing). An attention object may then have

* ``q_norm``, ``k_norm``: per-head norms of the queries and keys;
* ``rotate(t)``: the rotary embedding of the patch tokens, which are the
  last tokens of t (..., N, H, d); prefix tokens and prompts are never
  rotated;
* ``out_norm``: a norm of the merged heads before W_o (EVA's sub-LN);

* ``project(x, start, stop)``: rows start:stop of the packed projection
  of x, where a method adapts it (LoRA: x W^T + b + s drop(x) A^T B^T);
* ``add_to_projection(target, delta)``: W_t += delta in its own weights
  (t in q, k, v, o), where the weights are not ``nn.MultiheadAttention``'s;

so that q = rotate(q_norm(x W_q^T + b_q)) for the token stream x,
k = rotate(k_norm(x W_k^T + b_k)) for its keys and k_norm(P W_k^T + b_k)
for prompts', and the output is out_norm(A V) W_o^T + b_o. The folded
form needs logits linear in x and an output linear in A: only without
q_norm, rotary embedding and out_norm (``is_foldable``).
"""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(..., N, D) -> (..., H, N, D / H)."""
    *lead, n, dims = x.shape
    return x.reshape(*lead, n, num_heads, dims // num_heads).transpose(-3, -2)


def merge_heads(x: Tensor) -> Tensor:
    """(..., H, N, d) -> (..., N, H * d)."""
    x = x.transpose(-3, -2)
    return x.reshape(*x.shape[:-2], -1)


def packed_projection(mha: nn.MultiheadAttention, x: Tensor, start: int,
                      stop: int) -> Tensor:
    """Rows ``start:stop`` of the frozen packed projection:
    x W[start:stop]^T + b[start:stop]."""
    bias = mha.in_proj_bias
    return F.linear(x, mha.in_proj_weight[start:stop],
                    None if bias is None else bias[start:stop])


def _in_proj(mha: nn.MultiheadAttention, x: Tensor, start: int,
             stop: int) -> Tensor:
    """Rows ``start:stop`` of the packed projection, through the attention's
    own ``project`` where it adapts the projection (LoRA)."""
    project = getattr(mha, 'project', None)
    if project is not None:
        return project(x, start, stop)
    return packed_projection(mha, x, start, stop)


def _dropout_p(mha: nn.MultiheadAttention) -> float:
    return mha.dropout if mha.training else 0.


# ---- what some blocks add: q / k norms, rotary embedding, output norm -------
def _normed(mha: nn.Module, name: str, x: Tensor) -> Tensor:
    norm = getattr(mha, name, None)
    return x if norm is None else norm(x)


def _normed_and_rotated(mha: nn.Module, norm: str, t: Tensor,
                        rotate: bool) -> Tensor:
    t = _normed(mha, norm, t)
    rotation = getattr(mha, 'rotate', None) if rotate else None
    return t if rotation is None else rotation(t)


def token_queries(mha: nn.Module, q: Tensor, rotate: bool = True) -> Tensor:
    """rotate(q_norm(q)) for per-head queries q (..., N, H, d) of the token
    stream (patches last); ``rotate=False`` for prefix tokens alone."""
    return _normed_and_rotated(mha, 'q_norm', q, rotate)


def token_keys(mha: nn.Module, k: Tensor) -> Tensor:
    """rotate(k_norm(k)) for per-head keys k (..., N, H, d) whose last
    tokens are the patches."""
    return _normed_and_rotated(mha, 'k_norm', k, rotate=True)


def output_of(mha: nn.Module, merged: Tensor) -> Tensor:
    """out_norm(A V) W_o^T + b_o of the merged heads (..., N, D)."""
    return mha.out_proj(_normed(mha, 'out_norm', merged))


def is_foldable(mha: nn.Module) -> bool:
    """Whether CA's logits are linear in the queries' tokens and its output
    linear in the attention probabilities (no q norm, rotary embedding or
    output norm) with the packed weights as they are (no ``project``), as
    the folded form needs."""
    return all(getattr(mha, name, None) is None
               for name in ('q_norm', 'rotate', 'out_norm', 'project'))


#: the projections of an attention: q, k, v (the packed in-projection's
#: rows) and o (out_proj)
PROJECTIONS = ('q', 'k', 'v', 'o')


def add_to_projection(mha: nn.Module, target: str, delta: Tensor) -> None:
    """W_t += delta (D x D) in the attention's own weights, t in
    ``PROJECTIONS`` (call under ``torch.no_grad``)."""
    adder = getattr(mha, 'add_to_projection', None)
    if adder is not None:
        adder(target, delta)
    elif target == 'o':
        mha.out_proj.weight += delta
    else:
        start = PROJECTIONS.index(target) * mha.embed_dim
        mha.in_proj_weight[start:start + mha.embed_dim] += delta


def is_plain(mha: nn.Module) -> bool:
    """Whether the attention is its projections alone, as an
    ``nn.MultiheadAttention`` (no q / k norm, rotary embedding or output
    norm)."""
    return is_foldable(mha) and getattr(mha, 'k_norm', None) is None


def _heads(x: Tensor, num_heads: int) -> Tensor:
    """(..., N, D) -> (..., N, H, d): heads split, tokens still first."""
    return x.unflatten(-1, (num_heads, -1))


def queries_of(mha: nn.MultiheadAttention, x: Tensor,
               rotate: bool = True) -> Tensor:
    """q = W_q x + b_q for tokens x (..., N, D) (q norm and rotary
    embedding where the attention has them; ``rotate=False`` for prefix
    tokens alone, x (..., D))."""
    q = _heads(_in_proj(mha, x, 0, mha.embed_dim), mha.num_heads)
    return token_queries(mha, q, rotate).flatten(-2)


def query_key_vectors(mha: nn.MultiheadAttention, x: Tensor) -> Tensor:
    """z = W_k^T (W_q x + b_q) for tokens x (..., N, D), as rows: q W_k.

    The image-dependent part of the logit between a query token x and a key
    token p is z^T p (all heads together, before the 1 / sqrt(d) scale):
    (W_q x + b_q)^T (W_k p + b_k) = z^T p + q^T b_k. Only for keys linear
    in p: an attention with a key norm has no such z.
    """
    if getattr(mha, 'k_norm', None) is not None:
        raise ValueError(
            'this attention normalises its keys (k_norm), so its logits are '
            'not linear in the prompt and have no statistics z z^T: BPT '
            "(WhitenedPrompts, BilinearPrompts) cannot whiten its prompts; "
            "use prompt_cfg=dict(type='LayerPrompts') on q/k-normed models")
    return queries_of(mha, x) @ mha.in_proj_weight[mha.embed_dim:2 *
                                                   mha.embed_dim]


def _packed_qkv(mha: nn.MultiheadAttention,
                x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Q, K, V = x [W_q; W_k; W_v]^T + b for x (B, N, D), each (B, H, N, d),
    with q / k norms and rotary embedding where the attention has them.

    One packed projection; the heads are strided views of it (no copies
    without norms or rotation).
    """
    batch, num_tokens, _ = x.shape
    qkv = _in_proj(mha, x, 0, 3 * mha.embed_dim)
    q, k, v = qkv.reshape(batch, num_tokens, 3, mha.num_heads,
                          -1).unbind(2)
    q, k = token_queries(mha, q), token_keys(mha, k)
    return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)


def _attend(mha: nn.MultiheadAttention, q: Tensor, k: Tensor,
            v: Tensor) -> Tensor:
    """SDPA of per-head (B, H, N, d) queries, keys and values, then the
    output (``output_of``); SDPA's output is already laid out as
    (B, N, H, d)."""
    out = F.scaled_dot_product_attention(
        q, k, v, dropout_p=_dropout_p(mha))
    return output_of(mha, merge_heads(out))


def self_attention(mha: nn.MultiheadAttention, x: Tensor) -> Tensor:
    """Self-attention of x (B, N, D): Q, K, V = x [W_q; W_k; W_v]^T + b."""
    return _attend(mha, *_packed_qkv(mha, x))


def packed_keys_values(mha: nn.MultiheadAttention, x: Tensor) -> Tensor:
    """[K, V] = x [W_k; W_v]^T + [b_k; b_v] for x (..., D): (..., 2 D)."""
    dims = mha.embed_dim
    return _in_proj(mha, x, dims, 3 * dims)


def self_attention_with_prompts(mha: nn.MultiheadAttention, x: Tensor,
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
    batch, _, dims = x.shape
    heads = mha.num_heads
    q = token_queries(mha, _heads(_in_proj(mha, x, 0, dims), heads))
    kv = torch.cat((prompt_kv.expand(batch, -1, -1),
                    packed_keys_values(mha, x)), dim=1)
    k, v = kv.unflatten(-1, (2, heads, dims // heads)).unbind(2)
    k = token_keys(mha, k)
    return _attend(mha, q.transpose(1, 2), k.transpose(1, 2),
                   v.transpose(1, 2))


# ---- cross-attention to prompts, unfolded ----------------------------------
def prompt_keys_values(mha: nn.MultiheadAttention,
                       prompts: Tensor) -> Tuple[Tensor, Tensor]:
    """Keys and values of the prompts P (m, D), once for the whole batch.

    K = k_norm(P W_k^T + b_k) (no rotary embedding), V = P W_v^T + b_v,
    returned per head as (H, m, d).
    """
    keys, values = packed_keys_values(mha, prompts).chunk(2, dim=-1)
    keys = _normed(mha, 'k_norm', _heads(keys, mha.num_heads))
    return keys.transpose(-3, -2), split_heads(values, mha.num_heads)


def cross_attention(mha: nn.MultiheadAttention,
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
    batch, num_tokens, dims = x.shape
    queries = token_queries(mha, _heads(_in_proj(mha, x, 0, dims),
                                        mha.num_heads))
    queries = queries.reshape(1, batch * num_tokens, mha.num_heads, -1)
    out = F.scaled_dot_product_attention(
        queries.transpose(1, 2), keys[None], values[None],
        dropout_p=_dropout_p(mha))
    out = output_of(mha, merge_heads(out).reshape(batch, num_tokens, dims))
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


def fold_prompts(mha: nn.MultiheadAttention, prompts: Tensor,
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
    ``is_foldable``.
    """
    if not is_foldable(mha):
        raise ValueError('fold_prompts: this attention has a q norm, rotary '
                         'embedding or output norm, which do not fold; use '
                         'cross_attention')
    dims, heads = mha.embed_dim, mha.num_heads
    head_dims = dims // heads
    keys, values = prompt_keys_values(mha, prompts)  # (H, m, d)
    keys = keys * head_dims**-0.5
    w_q = mha.in_proj_weight[:dims].view(heads, head_dims, dims)
    logit_weight = torch.matmul(keys, w_q).flatten(0, 1)  # (H m, D)
    logit_bias = None
    if mha.in_proj_bias is not None:
        b_q = mha.in_proj_bias[:dims].view(heads, head_dims, 1)
        logit_bias = torch.matmul(keys, b_q).flatten()  # (H m)
    w_o = mha.out_proj.weight.view(dims, heads, head_dims).permute(1, 2, 0)
    out_values = torch.matmul(values, w_o).flatten(0, 1)  # U: (H m, D)
    out_bias = mha.out_proj.bias
    if out_bias is not None and _dropout_p(mha) == 0:
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


def folded_cross_attention(mha: nn.MultiheadAttention,
                           x: Tensor,
                           folded: FoldedPrompts,
                           residual: Optional[Tensor] = None) -> Tensor:
    """CA(x, P) = sum_h softmax(x M_h + c_h) U_h + b_o for x (B, N, D), plus
    ``residual`` when given (added by the output matrix product itself)."""
    logits = F.linear(x, folded.logit_weight, folded.logit_bias)
    probs = head_softmax(logits.unflatten(-1, (mha.num_heads, -1)))
    probs = probs.flatten(-2)
    if _dropout_p(mha) > 0:
        if folded.out_bias is None and mha.out_proj.bias is not None:
            raise ValueError(
                'these prompts were folded without attention dropout (b_o '
                'is inside U) but the attention now drops out: call '
                'fold_prompts in the mode the result is used in')
        probs = F.dropout(probs, _dropout_p(mha))
    if residual is None:
        out = torch.matmul(probs, folded.out_values)
    else:
        out = torch.addmm(residual.flatten(0, -2), probs.flatten(0, -2),
                          folded.out_values).view_as(residual)
    return out if folded.out_bias is None else out + folded.out_bias


def prefer_folded(mha: nn.MultiheadAttention, num_prompts: int,
                  with_grad: bool) -> bool:
    """Whether the folded form costs fewer multiply-adds per token.

    Forward: folded 2 H m D vs unfolded 2 D^2 + 2 m D (break-even
    m = D / (H - 1)). With gradients to the prompts (weights frozen) the
    backward adds 4 H m D (folded: gradients of x, M, U) vs 2 D^2 + 4 m D, so
    break-even moves to m = 2 D / (3 (H - 1)). Never for an attention
    that is not ``is_foldable``.
    """
    if not is_foldable(mha):
        return False
    dims, heads, m = mha.embed_dim, mha.num_heads, num_prompts
    if with_grad:
        return 6 * heads * m * dims < 4 * dims * dims + 6 * m * dims
    return heads * m * dims < dims * dims + m * dims
