"""Share of the self-attention mass that prompts take: VPT-deep vs CVPT.

For every layer l and prompt count P, with A = softmax(Q K^T / sqrt(d)) the
attention probabilities of layer l's self-attention (every head):

    share_l = mean over images, heads and image-token queries (class token
              and patches) of  sum over prompt keys of A

i.e. the fraction of its attention an image token spends on prompts. The
tokens are taken where the self-attention takes them, the output of the
block's first layer norm (a forward hook), for both methods alike; the prompt
keys are the tokens that are neither the class token nor a patch (VPT's P
prompts). CVPT's self-attention sees no prompts, so its share is 0 by
construction: the same measurement confirms it. With random weights the
attention is nearly uniform and VPT's share is close to P / (P + tokens);
with a trained checkpoint it shows how prompts crowd the image out (the CVPT
paper reports > 80% at 196 prompts).

Example::

    python tools/analysis/prompt_attention.py --prompts 1 10 50 100 196 \\
        --out work_dirs/prompt_attention
    python tools/analysis/prompt_attention.py --checkpoint vit_b16.pth \\
        --images demo/*.jpg --prompts 10 196 --out work_dirs/prompt_attention
"""
import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from mmseg.registry import MODELS  # noqa: E402

import mmseg_cvpt  # noqa: E402,F401  (registers the backbones)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_files import NO_MATPLOTLIB, pyplot  # noqa: E402
from mmseg_cvpt.engine.cli import (add_debug_argument,  # noqa: E402
                                   positive_int, run_tool)
from mmseg_cvpt.models.attention import (prompt_keys_values,  # noqa: E402
                                         queries_of, split_heads)
from mmseg_cvpt.models.backbones import EXTRA_STATE_KEY  # noqa: E402

METHODS = {'VPTViT': 'VPT-deep', 'CVPTViT': 'CVPT'}
# The hooks read VPT's whole sequence [cls, P, patches] at LN1, which its
# fast form (same outputs) never builds: VPT runs in its reference form.
BACKBONE_ARGS = {'VPTViT': dict(prompt_form='reference'), 'CVPTViT': {}}
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Weights, images and ViT architecture (shared with burstiness.py)."""
    parser.add_argument('--checkpoint', type=Path,
                        help='mmseg-layout ViT or whole-model checkpoint '
                        '(default: random weights)')
    parser.add_argument('--prefix', default='',
                        help="key prefix of the backbone, e.g. 'backbone.'")
    parser.add_argument('--images', type=Path, nargs='*', default=[],
                        help='image files (default: random images)')
    parser.add_argument('--num-random-images', type=positive_int, default=4)
    parser.add_argument('--img-size', type=positive_int, default=224)
    parser.add_argument('--patch-size', type=positive_int, default=16)
    parser.add_argument('--embed-dims', type=positive_int, default=768)
    parser.add_argument('--num-layers', type=positive_int, default=12)
    parser.add_argument('--num-heads', type=positive_int, default=12)
    parser.add_argument('--seed', type=int, default=0)


def check_model_arguments(parser: argparse.ArgumentParser,
                          args: argparse.Namespace) -> None:
    """Errors for inconsistent sizes and missing files; creates --out."""
    if args.img_size % args.patch_size:
        parser.error(f'--img-size {args.img_size} is not a multiple of '
                     f'--patch-size {args.patch_size}')
    if args.embed_dims % args.num_heads:
        parser.error(f'--embed-dims {args.embed_dims} is not divisible by '
                     f'--num-heads {args.num_heads}')
    for path in [args.checkpoint] + args.images:
        if path is not None and not path.is_file():
            parser.error(f'{path} does not exist')
    args.out.mkdir(parents=True, exist_ok=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Attention share of prompts in VPT-deep vs CVPT, per '
        'layer and against the number of prompts.')
    add_model_arguments(parser)
    parser.add_argument('--prompts', type=positive_int, nargs='+',
                        default=[1, 10, 50, 100, 196])
    parser.add_argument('--out', type=Path,
                        default=Path('work_dirs/prompt_attention'))
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    check_model_arguments(parser, args)
    return args


# ---- inputs -----------------------------------------------------------------
def load_images(paths: List[Path], size: int, count: int) -> Tensor:
    """(B, 3, size, size), normalised with the ImageNet mean / std."""
    if not paths:
        return torch.randn(count, 3, size, size)
    import mmcv
    images = []
    for path in paths:
        image = mmcv.imresize(mmcv.imread(str(path), channel_order='rgb'),
                              (size, size))
        images.append(torch.from_numpy(image).permute(2, 0, 1).float())
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (torch.stack(images) - mean) / std


def load_state(checkpoint: Optional[Path], prefix: str) -> Dict[str, Tensor]:
    if checkpoint is None:
        return {}
    state = CheckpointLoader.load_checkpoint(str(checkpoint),
                                             map_location='cpu')
    state = state.get('state_dict', state)
    return {k[len(prefix):]: v for k, v in state.items()
            if k.startswith(prefix)}


def build(backbone: str, num_prompts: int, args, state: Dict[str, Tensor],
          **kwargs) -> nn.Module:
    """The backbone (``kwargs``: more of its arguments) with the
    checkpoint's tensors whose shapes fit."""
    torch.manual_seed(args.seed)
    model = MODELS.build(
        dict(type=backbone, img_size=args.img_size, patch_size=args.patch_size,
             embed_dims=args.embed_dims, num_layers=args.num_layers,
             num_heads=args.num_heads, num_prompts=num_prompts,
             out_indices=(args.num_layers - 1, ), **BACKBONE_ARGS[backbone], **kwargs))
    model.init_weights()
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and (
        v.shape == own[k].shape or k == EXTRA_STATE_KEY)}
    # the record of a tuned-only checkpoint brings its frozen ViT
    loaded = model.load_state_dict(fitting, strict=False)
    missing = [k for k in loaded.missing_keys if model.is_pretrained_key(k)]
    if state and missing:
        raise KeyError(f'{args.checkpoint} lacks {len(missing)} ViT weights '
                       f'of this architecture, e.g. {missing[:3]} (use '
                       '--prefix backbone. for a whole-model checkpoint)')
    return model.eval()


# ---- the measurement --------------------------------------------------------
def prompt_share(mha: nn.MultiheadAttention, tokens: Tensor,
                 num_prefix: int, num_patches: int) -> float:
    """Mean over heads and image-token queries of the mass on prompt keys."""
    num_prompts = tokens.shape[1] - num_prefix - num_patches
    q = split_heads(queries_of(mha, tokens), mha.num_heads)
    k, _ = prompt_keys_values(mha, tokens)
    probs = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1)
    prompt_keys = slice(num_prefix, num_prefix + num_prompts)
    is_image = torch.ones(tokens.shape[1], dtype=torch.bool)
    is_image[prompt_keys] = False
    return probs[:, :, is_image, prompt_keys].sum(-1).mean().item()


def layer_shares(model: nn.Module, images: Tensor) -> List[float]:
    """Prompt share of every layer's self-attention on these images."""
    num_prefix = model.vit.num_prefix_tokens
    num_patches = (images.shape[2] // model.vit.patch_size) * (
        images.shape[3] // model.vit.patch_size)
    shares: List[float] = []

    def record(layer):
        def hook(module, inputs, output):  # output = LN1(x), the SA input
            shares.append(prompt_share(layer.attn.attn, output, num_prefix,
                                       num_patches))
        return hook

    handles = [layer.norm1.register_forward_hook(record(layer))
               for layer in model.vit.layers]
    with torch.no_grad():
        model(images)
    for handle in handles:
        handle.remove()
    return shares


# ---- reports ----------------------------------------------------------------
def write_reports(results: Dict[str, Dict[int, List[float]]], args) -> str:
    columns = [(method, p) for method in results for p in args.prompts]
    header = ['layer'] + [f'{method} P={p}' for method, p in columns]
    rows = []
    for layer in range(args.num_layers):
        rows.append([str(layer + 1)] + [
            f'{results[method][p][layer]:.3f}' for method, p in columns])
    rows.append(['mean'] + [
        f'{sum(results[m][p]) / args.num_layers:.3f}' for m, p in columns])
    with open(args.out / 'prompt_attention.csv', 'w', newline='') as file:
        csv.writer(file).writerows([header] + rows)
    table = '\n'.join(['| ' + ' | '.join(header) + ' |',
                       '|' + '---|' * len(header)] +
                      ['| ' + ' | '.join(row) + ' |' for row in rows])
    source = (f'checkpoint {args.checkpoint}' if args.checkpoint else
              'random weights')
    images = (f'{len(args.images)} images' if args.images else
              f'{args.num_random_images} random images')
    report = (f'Prompt share of self-attention mass ({source}, {images}, '
              f'{args.img_size}x{args.img_size}):\n\n{table}\n')
    (args.out / 'prompt_attention.md').write_text(report)
    return report


def plot(results: Dict[str, Dict[int, List[float]]], args) -> Optional[str]:
    plt = pyplot()
    if plt is None:
        return NO_MATPLOTLIB
    fig, (by_layer, by_prompts) = plt.subplots(1, 2, figsize=(10, 3.8))
    layers = range(1, args.num_layers + 1)
    for method, style in zip(results, ('-', '--')):
        for p in args.prompts:
            by_layer.plot(layers, results[method][p], style, marker='.',
                          label=f'{method} P={p}')
        by_prompts.plot(args.prompts,
                        [sum(results[method][p]) / args.num_layers
                         for p in args.prompts], style, marker='o',
                        label=method)
    by_layer.set(xlabel='layer', ylabel='prompt share of attention',
                 title='per layer')
    by_prompts.set(xlabel='prompts P', ylabel='mean over layers',
                   title='against P')
    for ax in (by_layer, by_prompts):
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    by_layer.legend(fontsize=7, ncol=2)
    by_prompts.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / 'prompt_attention.png', dpi=110)
    plt.close(fig)
    return None


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    images = load_images(args.images, args.img_size, args.num_random_images)
    state = load_state(args.checkpoint, args.prefix)
    results = {
        label: {p: layer_shares(build(backbone, p, args, state), images)
                for p in args.prompts}
        for backbone, label in METHODS.items()
    }
    print(write_reports(results, args))
    note = plot(results, args)
    print(note or f'Wrote {args.out}/prompt_attention.md, .csv and .png')


if __name__ == '__main__':
    run_tool(main)
