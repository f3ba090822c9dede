"""The synthetic textures of the demos: the classes of the tiny ViT's
pretraining task (``pretrain_tiny_vit.py``) and the camouflage of the
segmentation demo's scenes (``make_ade20k_demo.py``)."""
import math

import torch

NUM_TEXTURES, NUM_BANDS = 6, 4
BANDS = torch.linspace(2, 8, NUM_BANDS + 1) * math.pi  # frequency bands


def texture_masks(x: torch.Tensor, y: torch.Tensor, frequency: torch.Tensor,
                  phase: torch.Tensor) -> torch.Tensor:
    """(B, 6, S, S) masks of the 6 textures at image coordinates x, y."""
    fx, fy = frequency * x + phase, frequency * y + phase
    grid = fx.sin() * fy.sin()
    return torch.stack([
        fy.sin() > 0,  # horizontal stripes
        fx.sin() > 0,  # vertical stripes
        grid > 0,  # checkerboard
        grid > 0.5,  # dots
        ((fx + fy) / math.sqrt(2)).sin() > 0,  # diagonal stripes
        (frequency * (x**2 + y**2).sqrt() + phase).sin() > 0,  # rings
    ], 1)
