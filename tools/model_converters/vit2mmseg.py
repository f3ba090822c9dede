"""Convert a timm or JAX ViT checkpoint to mmseg ``VisionTransformer`` keys.

Usage::

    python tools/model_converters/vit2mmseg.py SRC DST [--src-format timm|jax]

SRC is a timm state dict (``.pth``/``.pt``/``.bin`` or ``.safetensors``) or a
JAX ``.npz`` (e.g. ``ViT-B_16.npz`` of VPT/CVPT); the layout is detected from
the keys unless ``--src-format`` is given. DST is written atomically as a
plain tensor state dict; classifier keys (``head``, ``pre_logits``) are
dropped.

Both layouts carry a patch-embedding bias and LayerNorm eps 1e-6, so build
the backbone with ``patch_bias=True`` (mmseg's default is False; mmseg's
``init_weights`` loads non-strictly and would silently skip the bias) and
``norm_cfg=dict(type='LN', eps=1e-6)``.
"""
import argparse
import io

import torch

from mmseg_cvpt.engine.checkpoint import write_atomic
from mmseg_cvpt.engine.cli import add_debug_argument, run_tool
from mmseg_cvpt.models import checkpoint_convert as converter


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog='The converted weights need the mmseg backbone args '
        "patch_bias=True and norm_cfg=dict(type='LN', eps=1e-6).")
    parser.add_argument('src', help='timm .pth/.pt/.bin/.safetensors or '
                        'JAX .npz checkpoint')
    parser.add_argument('dst', help='output .pth path')
    parser.add_argument('--src-format', choices=converter.SRC_FORMATS,
                        help='source layout (default: detected from keys)')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    result = converter.load_and_convert(args.src, args.src_format)
    buffer = io.BytesIO()
    torch.save(result.state_dict, buffer)
    write_atomic(buffer.getvalue(), args.dst)
    print(f'converted {len(result.state_dict)} tensors from '
          f'{result.src_format} layout: {args.src} -> {args.dst}')
    print(f'dropped {len(result.dropped)} keys: {result.dropped}')


if __name__ == '__main__':
    run_tool(main)
