"""Count the trainable parameters of a segmentor config.

Builds the model on the CPU without loading weights (ViT-B takes a few
seconds) and prints the method whose config it is (``mmseg_cvpt.methods``),
the trainable parameters of the backbone, of each head
(neck included) and in total, with the total size of the model, then each
trainable backbone tensor (prompts, BPT's bilinear factors, ...).

Example::

    python tools/analysis/count_params.py configs/cvpt/upernet_vitb_ade20k.py
    # backbone  1,843,200 for CVPT and VPT-deep at P=200, 0 for the baseline
    python tools/analysis/count_params.py configs/bpt/upernet_vitb_ade20k.py
    # backbone    490,800 = 12 x (50 x 50 + 768 x 50), bilinear prompts
    python tools/analysis/count_params.py \
        configs/rein/mask2former_dinov2_vitl14_gta2city.py
    # backbone  2,990,081, beside Rein's published 2.99 M

Where the paper of the config's method gives its trainable count for a
backbone of this size (``Method.published``), ours is printed beside it.
"""
import argparse
import warnings
from typing import List

from mmengine.config import DictAction
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from mmseg_cvpt.engine import load_config
from mmseg_cvpt.engine.cli import add_debug_argument, run_tool
from mmseg_cvpt.methods import method_of_config
from mmseg_cvpt.models import find_prompted_backbone

# mmengine re-imports the deprecated pkg_resources for every `pkg::` base
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Count the trainable parameters of a model config')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def count(module, trainable_only=True):
    """Number of (trainable) parameters of ``module`` (0 for None)."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters()
               if p.requires_grad or not trainable_only)


def count_trainable(model):
    """Trainable parameters per top-level part of a segmentor.

    Returns:
        dict: part name (``backbone``, ``neck``, ``decode_head``,
        ``auxiliary_head``, ...) -> count, plus ``heads`` (all but the
        backbone) and ``total``.
    """
    counts = {
        name: count(child)
        for name, child in model.named_children() if count(child, False)
    }
    counts['heads'] = sum(v for k, v in counts.items() if k != 'backbone')
    counts['total'] = count(model)
    return counts


def published_comparison(method, model, counts) -> List[str]:
    """The method's published trainable counts for this backbone's size
    (``Method.published``) beside ours: the backbone's trainable
    parameters, the method's own tensors, which is what the papers count
    (the heads are the setting's)."""
    if method is None or not method.published:
        return []
    backbone = find_prompted_backbone(model)
    size = (backbone.vit.embed_dims, len(backbone.blocks))
    ours = counts.get('backbone', 0)
    lines = []
    for entry in method.published:
        if (entry.embed_dims, entry.depth) != size:
            continue
        rounded = f'{ours / 1e6:.2f} M'
        verdict = ('the same to the published precision' if rounded ==
                   entry.shown else
                   f'{ours - entry.trainable:+,} against {entry.shown}: '
                   'the config differs from the paper\'s setting (its '
                   'header says how)')
        lines.append(f'Published: {entry.shown} ({entry.source}); here the '
                     f'backbone\'s {ours:,} = {rounded}, {verdict}')
    return lines


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = MODELS.build(cfg.model)
    counts = count_trainable(model)
    method = method_of_config(args.config)
    if method is not None:
        print(f'Method: {method.label} ({method.backbone})')
    print(f'Trainable parameters of {args.config}:')
    for name, value in counts.items():
        print(f'  {name:<18}{value:>14,}')
    print(f'  {"all, frozen too":<18}{count(model, False):>14,}')
    for line in published_comparison(method, model, counts):
        print(line)
    backbone = getattr(model, 'backbone', model)
    tensors = [(name, p) for name, p in backbone.named_parameters()
               if p.requires_grad]
    if tensors:
        print('Trainable backbone tensors:')
    for name, param in tensors:
        print(f'  {name:<28}{str(tuple(param.shape)):<18}'
              f'{param.numel():>12,}')


if __name__ == '__main__':
    run_tool(main)
