"""Multiply-add counts of the frozen ViT, the terms every method's cost is
built from (docs/performance.md, "Multiply-add formulas").

Each method states its own cost beside its code, in these terms:
``vpt_macs`` and ``vpt_reference_macs`` (``backbones/vpt_vit.py``),
``cvpt_macs`` (``backbones/cvpt_vit.py``), ``bilinear_prompts_macs``
(``prompts.py``) and ``proxy_guidance_macs`` (``guidance.py``).
``tools/analysis/benchmark.py`` compares them with the FLOPs counted over
the ops run (``tests/test_benchmark_tool.py``: exactly equal).

Weights are frozen: a backward computes gradients to the tokens (and the
prompts), never to the ViT's weights. A step's cost is a pair
``(train step, inference)``, the train step being forward + backward.
"""
from dataclasses import dataclass
from functools import lru_cache
from typing import Tuple


@dataclass(frozen=True)
class Shape:
    """What the multiply-add counts depend on."""
    batch: int  # B
    patches: int  # n
    prompts: int  # m
    dims: int  # D
    heads: int  # H
    layers: int  # L
    mlp_ratio: int  # r
    patch_size: int  # p
    prefix: int = 1  # the class token (and registers)

    @property
    def tokens(self) -> int:
        """N: the prefix tokens and the patches."""
        return self.patches + self.prefix


@lru_cache()
def _timm_architecture(model_name: str, options: tuple) -> tuple:
    """(patch size, D, H, L, r, prefix tokens) of a timm ViT, read from the
    model built on the meta device (no memory, no weights)."""
    import timm
    import torch
    with torch.device('meta'):
        model = timm.create_model(model_name, pretrained=False,
                                  **dict(options))
    block = model.blocks[0]
    return (model.patch_embed.patch_size[0], model.embed_dim,
            block.attn.num_heads, len(model.blocks),
            block.mlp.fc1.out_features // model.embed_dim,
            model.num_prefix_tokens)


def shape_of(arch: dict, size: int, prompts: int, batch: int) -> Shape:
    """The Shape of a backbone's ViT arguments ``arch`` (mmseg's
    ``VisionTransformer`` arguments, or ``vit=dict(type='TimmViT', ...)``)
    on ``batch`` square images of ``size`` pixels with ``prompts`` a
    layer."""
    if 'vit' in arch:
        options = {k: v for k, v in arch['vit'].items()
                   if k not in ('type', 'model_name', 'checkpoint',
                                'out_indices', 'final_norm', 'img_size',
                                'with_cp')}
        patch, dims, heads, layers, ratio, prefix = _timm_architecture(
            arch['vit']['model_name'], tuple(sorted(options.items())))
    else:
        patch, dims, heads, layers, ratio, prefix = (
            arch['patch_size'], arch['embed_dims'], arch['num_heads'],
            arch['num_layers'], arch['mlp_ratio'], 1)
    return Shape(batch, (size // patch)**2, prompts, dims, heads, layers,
                 ratio, patch, prefix)


def block_forward(s: Shape, queries: int, keys: int) -> int:
    """A block on one image: W_q, W_k, W_v, W_o and the MLP on its T query
    tokens, (4 + 2 r) T D^2, and attention to S keys, 2 T S D."""
    projections = (4 + 2 * s.mlp_ratio) * queries * s.dims**2
    return projections + 2 * queries * keys * s.dims


def block_backward(s: Shape, queries: int, keys: int) -> int:
    """Its gradient to the input tokens (frozen weights: no weight
    gradients): the same (4 + 2 r) T D^2, and SDPA's backward 5 T S D (the
    scores recomputed, then the gradients of A, V, Q and K)."""
    projections = (4 + 2 * s.mlp_ratio) * queries * s.dims**2
    return projections + 5 * queries * keys * s.dims


def embedding(s: Shape) -> int:
    """The patch embedding, a p x p convolution: B n 3 p^2 D."""
    return s.batch * s.patches * 3 * s.patch_size**2 * s.dims


def sequence_macs(s: Shape, tokens: int) -> Tuple[int, int]:
    """(train step, inference) of the blocks on ``tokens`` tokens per image,
    the train step's backward reaching layer 1's input."""
    blocks = s.batch * s.layers
    infer = embedding(s) + blocks * block_forward(s, tokens, tokens)
    return infer + blocks * block_backward(s, tokens, tokens), infer


def frozen_macs(s: Shape) -> Tuple[int, int]:
    """The frozen ViT (no prompts), its backward reaching the tokens that
    enter block 1: the floor every deep-prompt method pays."""
    return sequence_macs(s, s.tokens)
