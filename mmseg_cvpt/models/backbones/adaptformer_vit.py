"""AdaptFormer (Chen et al., NeurIPS 2022; ShoufaChen/AdaptFormer
models/custom_modules.py): a bottleneck adapter parallel to each frozen
block's MLP."""
import math
from typing import Tuple

from mmseg.registry import MODELS
from torch import Tensor, nn

from ..costs import Shape, block_backward, frozen_macs
from .prompted_vit import FrozenViTBackbone


class Adapter(nn.Module):
    """s * up(dropout(ReLU(down(x)))): down kaiming-uniform(a = sqrt 5), up
    and both biases zeros (the reference's "lora" init: the block starts as
    the frozen one)."""

    def __init__(self, dims: int, bottleneck: int, scale: float,
                 dropout: float):
        super().__init__()
        self.down = nn.Linear(dims, bottleneck)
        self.up = nn.Linear(bottleneck, dims)
        self.dropout = nn.Dropout(dropout)
        self.scale = scale
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        for tensor in (self.up.weight, self.down.bias, self.up.bias):
            nn.init.zeros_(tensor)

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * self.up(self.dropout(self.down(x).relu()))


@MODELS.register_module()
class AdaptFormerViT(FrozenViTBackbone):
    """AdaptFormer on every block of a frozen ViT (its "parallel" adapter,
    input option "none": the un-normalised x'), as the blocks' MLP hooks:

        x' = x + SA(LN1(x))
        x  = x' + MLP(LN2(x')) + s * up(dropout(ReLU(down(x'))))

    Args:
        bottleneck (int): the adapter's width. Default 64.
        scale (float): s, fixed. Default 0.1.
        dropout (float): dropout between ReLU and up. Default 0.1.
        See ``FrozenViTBackbone`` for the other arguments (no prompts).
    """

    uses_prompts = False

    def __init__(self,
                 bottleneck: int = 64,
                 scale: float = 0.1,
                 dropout: float = 0.1,
                 **kwargs):
        super().__init__(**kwargs)
        self.bottleneck = bottleneck
        self.adapters = nn.ModuleList(
            Adapter(self.vit.embed_dims, bottleneck, scale, dropout)
            for _ in self.vit.blocks)
        self.hook_blocks(mlp=list(self.adapters))

    def structure(self) -> dict:
        return dict(super().structure(), adapter='parallel, input x')


# ---- cost (docs/performance.md) -------------------------------------------
def adaptformer_macs(s: Shape, bottleneck: int = 64) -> Tuple[int, int]:
    """(train step, inference) multiply-adds: per token and layer the
    adapter's down and up, 2 b D forward; backward the gradients of both
    weights and of the bottleneck, 3 b D, and of x', b D more where x'
    needs one. At layer 1 x' needs none (the embeddings and the frozen
    block give it), so the frozen block 1 has no backward at all."""
    train, infer = frozen_macs(s)
    tokens = s.batch * s.tokens
    forward = s.layers * tokens * 2 * bottleneck * s.dims
    backward = 2 * forward - tokens * bottleneck * s.dims
    return (train + forward + backward
            - s.batch * block_backward(s, s.tokens, s.tokens),
            infer + forward)
