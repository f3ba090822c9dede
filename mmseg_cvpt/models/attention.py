"""Multi-head attention computed from the packed weights of an
``nn.MultiheadAttention`` (``in_proj_weight`` = [W_q; W_k; W_v], ``out_proj``).

mmseg's ViT calls ``nn.MultiheadAttention`` with ``need_weights=True``, which
takes PyTorch's slow explicit path. These functions reuse the very same
parameters (nothing is copied) and run
``torch.nn.functional.scaled_dot_product_attention``:

    Attn(Q, K, V) = concat_h softmax(Q_h K_h^T / sqrt(d)) V_h  W_o^T + b_o
"""
from typing import Tuple

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


def _in_proj(mha: nn.MultiheadAttention, x: Tensor, start: int,
             stop: int) -> Tensor:
    """Rows ``start:stop`` of the packed projection: x W[start:stop]^T + b."""
    bias = mha.in_proj_bias
    return F.linear(x, mha.in_proj_weight[start:stop],
                    None if bias is None else bias[start:stop])


def _dropout_p(mha: nn.MultiheadAttention) -> float:
    return mha.dropout if mha.training else 0.


def self_attention(mha: nn.MultiheadAttention, x: Tensor) -> Tensor:
    """Self-attention of x (B, N, D): Q, K, V = x [W_q; W_k; W_v]^T + b."""
    batch, num_tokens, dims = x.shape
    qkv = F.linear(x, mha.in_proj_weight, mha.in_proj_bias)
    qkv = qkv.reshape(batch, num_tokens, 3, mha.num_heads,
                      dims // mha.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    out = F.scaled_dot_product_attention(
        q, k, v, dropout_p=_dropout_p(mha))
    return mha.out_proj(merge_heads(out))


def prompt_keys_values(mha: nn.MultiheadAttention,
                       prompts: Tensor) -> Tuple[Tensor, Tensor]:
    """Keys and values of the prompts P (m, D), once for the whole batch.

    K = P W_k^T + b_k, V = P W_v^T + b_v, returned per head as (H, m, d).
    """
    dims = mha.embed_dim
    keys = _in_proj(mha, prompts, dims, 2 * dims)
    values = _in_proj(mha, prompts, 2 * dims, 3 * dims)
    return (split_heads(keys, mha.num_heads),
            split_heads(values, mha.num_heads))


def cross_attention(mha: nn.MultiheadAttention,
                    x: Tensor,
                    keys: Tensor,
                    values: Tensor) -> Tensor:
    """Cross-attention of the tokens x (B, N, D) to prompt keys/values (H, m, d).

    CA(x, P) = concat_h softmax(Q_h K_h^T / sqrt(d)) V_h W_o^T + b_o with
    Q = x W_q^T + b_q; K and V are shared by every image of the batch.
    """
    queries = split_heads(_in_proj(mha, x, 0, mha.embed_dim), mha.num_heads)
    batch = x.shape[0]
    out = F.scaled_dot_product_attention(
        queries, keys.expand(batch, -1, -1, -1),
        values.expand(batch, -1, -1, -1), dropout_p=_dropout_p(mha))
    return mha.out_proj(merge_heads(out))
