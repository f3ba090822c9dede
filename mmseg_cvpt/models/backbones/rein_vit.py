"""Rein (Wei et al., CVPR 2024; w1oves/Rein rein/models/backbones/reins.py,
``LoRAReins``): learnable tokens that refine each frozen block's patch
features."""
import math
from typing import List, Tuple

import torch
from mmseg.registry import MODELS
from torch import Tensor, nn

from ..costs import Shape, block_backward, frozen_macs
from ..families import Block, Tokens
from .prompted_vit import FrozenViTBackbone


@MODELS.register_module()
class ReinViT(FrozenViTBackbone):
    """Rein after every block of a frozen ViT, on its patch tokens f (B, n,
    D) (the prefix tokens are left as they are), with the layer's tokens
    T_i = A_i B_i (A_i m x r, B_i r x D):

        S     = softmax over the m tokens of f T_i^T / sqrt(D)
        dbar  = S[:, :, 1:] (T_i[1:] W_T^T + b_T)  (token 0: softmax only)
        delta = (dbar + f) W_f^T + b_f
        f     = f + s * delta

    W_T, b_T, W_f, b_f and the scalar s (init 1e-3) are shared by all
    layers; A, B uniform(-v, v), v = sqrt(6 / (3 p^2 + sqrt(D r))), p the
    patch size; W_T, W_f kaiming-uniform(a = sqrt 5) (nn.Linear's).

    Rein's link of the tokens to Mask2Former's queries
    (``link_token_to_query``; w1oves/Rein ``Reins.return_auto``): per token
    index j, with t_ij = T_i[j] W_q^T + b_q (W_q: D -> q) over the L layers,

        query_j = W_m [max_i t_ij, mean_i t_ij, t_Lj] + b_m

    the three pooled vectors interleaved per channel (c: max, mean, last,
    as Rein flattens them), W_m: 3 q -> q. They do not depend on the image:
    ``query_embeddings()`` gives them to a head (m x q).

    Args:
        num_tokens (int): m. Default 100.
        rank (int): r. Default 16.
        link_token_to_query (bool): also make the query embeddings.
            Default False.
        query_dims (int): q, the head's query width. Default 256.
        See ``FrozenViTBackbone`` for the other arguments (no
        prompts).
    """

    uses_prompts = False

    def __init__(self, num_tokens: int = 100, rank: int = 16,
                 link_token_to_query: bool = False, query_dims: int = 256,
                 **kwargs):
        super().__init__(**kwargs)
        dims, layers = self.vit.embed_dims, len(self.vit.blocks)
        self.num_tokens, self.rank = num_tokens, rank
        self.token_factors = nn.Parameter(torch.empty(layers, num_tokens,
                                                      rank))  # A
        self.token_basis = nn.Parameter(torch.empty(layers, rank, dims))  # B
        bound = math.sqrt(6 / (3 * self.vit.patch_size**2 +
                               math.sqrt(dims * rank)))
        nn.init.uniform_(self.token_factors, -bound, bound)
        nn.init.uniform_(self.token_basis, -bound, bound)
        self.token_to_feature = nn.Linear(dims, dims)  # W_T, b_T
        self.feature_delta = nn.Linear(dims, dims)  # W_f, b_f
        self.delta_scale = nn.Parameter(torch.tensor(1e-3))  # s
        self.link_token_to_query = link_token_to_query
        if link_token_to_query:
            self.query_transform = nn.Linear(dims, query_dims)  # W_q, b_q
            self.query_merge = nn.Linear(3 * query_dims, query_dims)  # W_m

    def structure(self) -> dict:
        """The linked queries only where they are on (the identity that
        checkpoints of Rein without them record stays as it was)."""
        linked = dict(rein_queries=True) if self.link_token_to_query else {}
        return dict(super().structure(), rein_tokens=self.num_tokens,
                    **linked)

    def query_embeddings(self) -> Tensor:
        """The m query embeddings (m x q) made from the layers' tokens (see
        the class docstring)."""
        if not self.link_token_to_query:
            raise RuntimeError('ReinViT: query_embeddings needs '
                               'link_token_to_query=True')
        tokens = self.query_transform(
            self.token_factors @ self.token_basis)  # (L, m, q)
        pooled = torch.stack((tokens.amax(0), tokens.mean(0), tokens[-1]),
                             dim=-1)  # (m, q, 3)
        return self.query_merge(pooled.flatten(-2))

    def layer_tokens(self, index: int) -> Tensor:
        """T_i = A_i B_i (m x D)."""
        return self.token_factors[index] @ self.token_basis[index]

    def refine(self, index: int, features: Tensor) -> Tensor:
        """f + s * delta for patch features f (B, n, D)."""
        tokens = self.layer_tokens(index)
        scores = (features @ tokens.T) * features.shape[-1]**-0.5
        share = scores.softmax(-1)[..., 1:]
        delta = self.feature_delta(
            share @ self.token_to_feature(tokens[1:]) + features)
        return features + self.delta_scale * delta

    def forward_block(self, index: int, block: Block, tokens: Tokens,
                      prompts: List[Tensor]) -> Tokens:
        tokens = tokens.replace_x(block(tokens.x))
        refined = self.refine(index, tokens.patches)
        return tokens.replace_x(torch.cat((tokens.prefix, refined), dim=1))


# ---- cost (docs/performance.md) -------------------------------------------
def rein_macs(s: Shape, num_tokens: int = 100,
              rank: int = 16) -> Tuple[int, int]:
    """(train step, inference) multiply-adds. Per layer, once a step:
    T = A B, m r D, and T[1:] W_T^T, (m - 1) D^2; per image and layer, on
    the n patches: f T^T, n m D, S (T W_T), n (m - 1) D, and W_f, n D^2.
    Backward: twice each product (both operands' gradients), but f T^T at
    layer 1, whose f needs none (once: T's); the frozen block 1 has no
    backward (its input, the embeddings, needs none)."""
    train, infer = frozen_macs(s)
    m, dims, n = num_tokens, s.dims, s.patches
    per_step = m * rank * dims + (m - 1) * dims**2
    per_image = n * m * dims + n * (m - 1) * dims + n * dims**2
    forward = s.layers * (per_step + s.batch * per_image)
    backward = 2 * forward - s.batch * n * m * dims
    return (train + forward + backward
            - s.batch * block_backward(s, s.tokens, s.tokens),
            infer + forward)
