"""Pretrain the embedded demo's tiny ViT on a synthetic source task.

The demo configs (``configs/*/upernet_vittiny_ade20k_demo.py``) load a ViT
of 4 layers, width 64, 4 heads, 8x8 patches of 64x64 images through
``init_cfg``, as the real configs load ViT-B/16. This script makes it:

1. trains timm's ``VisionTransformer`` of that shape to classify images
   generated on the fly: 6 textures x 4 frequency bands = 24 classes, in
   random colours, half of them partly covered by one of 8 shapes (a task
   unlike the demo's scenes: prompts then adapt a representation learnt
   elsewhere);
2. saves it in timm's layout (``--timm-out``);
3. converts it with ``tools/model_converters/vit2mmseg.py`` to mmseg's
   layout (``OUT``, what the configs load).

``--style dinov2`` makes the timm family's demo ViT instead
(``configs/*/upernet_vittiny_dinov2_ade20k_demo.py``): timm's
``vit_base_patch14_reg4_dinov2`` at the same size (4 registers, layer
scale, position embedding without a class slot), saved in timm's layout
only (``OUT``), as the ``TimmViT`` family reads it::

    python tools/misc/pretrain_tiny_vit.py \
        pretrain/vit_tiny_dinov2_demo_timm.pth --style dinov2

Everything is seeded and runs with one thread and deterministic
algorithms: the same command on the same stack (torch, CPU kind) writes the
same bytes. The repository ships the result of the default command::

    python tools/misc/pretrain_tiny_vit.py pretrain/vit_tiny_demo_mmseg.pth

(about 4 minutes on one core; held-out accuracy printed at the end).
"""
import argparse
import io
import math
import os
import os.path as osp
import subprocess
import sys
import time

import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from mmseg_cvpt.engine.checkpoint import write_atomic

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from synthetic_textures import (BANDS, NUM_BANDS, NUM_TEXTURES,  # noqa: E402
                                texture_masks)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
IMG_SIZE = 64
ARCH = dict(img_size=IMG_SIZE, patch_size=8, embed_dim=64, depth=4,
            num_heads=4, mlp_ratio=4., qkv_bias=True)
#: --style: the timm model the demo ViT is (ARCH's size, that model's kind)
STYLES = {'vit': None, 'dinov2': 'vit_base_patch14_reg4_dinov2'}
# The demo configs' data preprocessor (mmseg's ImageNet statistics, RGB).
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)


def shape_masks(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(B, 8, S, S) masks of the 8 shapes in object coordinates u, v."""
    radius = (u**2 + v**2).sqrt()
    return torch.stack([
        radius <= 1,  # disk
        torch.maximum(u.abs(), v.abs()) <= 0.8,  # square
        (v.abs() <= 0.8) & (u.abs() <= (v + 0.8) * 0.6),  # triangle
        (radius >= 0.55) & (radius <= 1),  # ring
        ((u.abs() <= 0.3) & (v.abs() <= 1)) |
        ((v.abs() <= 0.3) & (u.abs() <= 1)),  # cross
        u.abs() + v.abs() <= 1,  # diamond
        (u.abs() <= 1) & (v.abs() <= 0.35),  # horizontal bar
        (v.abs() <= 1) & (u.abs() <= 0.35),  # vertical bar
    ], 1)


NUM_SHAPES = 8
NUM_CLASSES = NUM_TEXTURES * NUM_BANDS


def sample_batch(batch: int, generator: torch.Generator):
    """Images (B, 3, S, S) normalised like the demo's inputs, labels (B,):
    class = texture * 4 + frequency band. The texture fills the image in
    two random colours; in half of the images a shape (one of 8, random
    colour, size and place) covers part of it."""

    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand(*shape, generator=generator)

    labels = torch.randint(NUM_CLASSES, (batch, ), generator=generator)
    textures, bands = labels // NUM_BANDS, labels % NUM_BANDS
    axis = torch.linspace(-1, 1, IMG_SIZE)
    y, x = (t.expand(batch, -1, -1)
            for t in torch.meshgrid(axis, axis, indexing='ij'))
    rows = torch.arange(batch)
    low, high = BANDS[bands], BANDS[bands + 1]
    frequency = (low + (high - low) * torch.rand(batch, generator=generator))
    texture = texture_masks(x, y, frequency.view(-1, 1, 1),
                            uniform(0, 2 * math.pi, batch, 1, 1))
    ink, paper, colour = (uniform(0, 1, batch, 3, 1, 1) for _ in range(3))
    images = torch.where(texture[rows, textures][:, None], ink, paper)
    centre = uniform(-0.6, 0.6, batch, 2, 1, 1)
    radius = uniform(0.15, 0.4, batch, 1, 1)
    u, v = (x - centre[:, 0]) / radius, (y - centre[:, 1]) / radius
    shapes = torch.randint(NUM_SHAPES, (batch, ), generator=generator)
    shown = torch.rand(batch, 1, 1, generator=generator) < 0.5
    shape = shape_masks(u, v)[rows, shapes] & shown
    images = torch.where(shape[:, None], colour, images)
    images = images + 0.08 * torch.randn(images.shape, generator=generator)
    images = images.clamp(0, 1) * 255
    return (images - MEAN) / STD, labels


def build_model(style: str = 'vit') -> VisionTransformer:
    if STYLES[style] is None:
        return VisionTransformer(**ARCH, num_classes=NUM_CLASSES)
    return timm.create_model(STYLES[style], pretrained=False,
                             num_classes=NUM_CLASSES, **ARCH)


def accuracy(model: VisionTransformer, images, labels) -> float:
    model.eval()
    with torch.no_grad():
        correct = (model(images).argmax(1) == labels).float().mean()
    model.train()
    return float(correct)


def pretrain(steps: int, batch: int, lr: float, seed: int,
             log_interval: int = 100,
             style: str = 'vit') -> VisionTransformer:
    """AdamW (weight decay 0.05), linear warm-up for 5% of the steps, then
    cosine decay; fresh images every step."""
    torch.manual_seed(seed)
    model = build_model(style)
    data = torch.Generator().manual_seed(seed + 1)
    held_out = sample_batch(1024, torch.Generator().manual_seed(seed + 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr,
                                  weight_decay=0.05)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min((i + 1) / warmup, 0.5 * (1 + math.cos(
            math.pi * max(0, i - warmup) / max(1, steps - warmup)))))
    start = time.monotonic()
    for step in range(1, steps + 1):
        images, labels = sample_batch(batch, data)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % log_interval == 0 or step == steps:
            print(f'step {step}/{steps}  loss {loss.item():.3f}  '
                  f'{time.monotonic() - start:.0f} s', flush=True)
    print(f'held-out accuracy over {NUM_CLASSES} classes: '
          f'{100 * accuracy(model, *held_out):.1f}% (chance '
          f'{100 / NUM_CLASSES:.1f}%)')
    return model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('out', help='the converted (mmseg layout) .pth; '
                        'with --style dinov2 the timm layout .pth')
    parser.add_argument('--style', choices=sorted(STYLES), default='vit',
                        help="'vit': the mmseg demo's ViT; 'dinov2': the "
                        'timm family demo\'s (registers, layer scale)')
    parser.add_argument('--timm-out',
                        help="timm layout .pth (default: OUT with '_timm' "
                        "in place of '_mmseg', or OUT's name + '_timm')")
    parser.add_argument('--steps', type=int, default=1500)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--lr', type=float, default=2e-3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads (1: the same bytes every run)')
    args = parser.parse_args(argv)
    for name in ('steps', 'batch', 'threads'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be at least 1')
    if not args.lr > 0:
        parser.error(f'--lr must be positive, got {args.lr}')
    if args.style != 'vit':
        if args.timm_out:
            parser.error('--timm-out: with --style dinov2 OUT is the timm '
                         'checkpoint')
        return args
    if args.timm_out is None:
        stem, ext = osp.splitext(args.out)
        args.timm_out = (stem.replace('_mmseg', '_timm') if '_mmseg' in stem
                         else stem + '_timm') + ext
    if osp.abspath(args.timm_out) == osp.abspath(args.out):
        parser.error('--timm-out must differ from OUT (the converted file '
                     'would overwrite the timm one)')
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    model = pretrain(args.steps, args.batch, args.lr, args.seed,
                     style=args.style)
    timm_out = args.timm_out or args.out
    for path in (args.out, timm_out):
        os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    write_atomic(buffer.getvalue(), timm_out)
    print(f'timm checkpoint: {timm_out}')
    if args.style != 'vit':
        return
    subprocess.run([
        sys.executable,
        osp.join(REPO, 'tools', 'model_converters', 'vit2mmseg.py'),
        args.timm_out, args.out
    ], check=True)


if __name__ == '__main__':
    main()
