"""Burstiness of what the prompts meet in attention, before and after BPT's
whitening, per prompted layer, for VPT-deep and CVPT.

A prompt p of layer l meets a query token u through the logit z^T p with
z = W_k^T (W_q u + b_q): u = LN1(x) for VPT (the self-attention input), the
cross-attention's input for CVPT (position 3: x + SA(LN1(x))), x the
layer's input in the prompt-free model
(``mmseg_cvpt.models.prompt_statistics.prompt_query_vectors``). BPT's
observation is that these z are bursty (heavy-tailed); whitening them with
W = c S^(-1/2), S = mean z z^T (the matrix ``WhitenedPrompts`` is built
from, same eps), decorrelates them.

For each layer the tool reports the excess kurtosis of the coordinates of z
(the mean over the D coordinates of E[(z_j - mu_j)^4] / var_j^2 - 3; 0 for a
Gaussian, 3 for a Laplacian) and of the whitened z W, and the condition
number of S; the PNG shows the kurtosis per layer and the histogram of the
standardised coordinates pooled over layers (log scale: heavy tails show as
wide skirts). Writes ``burstiness.md``, ``burstiness.csv`` and
``burstiness.png`` to ``--out``.

Example (random weights and images, ViT-B/16: 16 images at 224x224,
about 1.5 minutes on 2 cores)::

    python tools/analysis/burstiness.py --out work_dirs/burstiness
    python tools/analysis/burstiness.py --checkpoint vit_b16.pth \\
        --images demo/*.jpg --out work_dirs/burstiness
"""
import argparse
import csv
import sys
from pathlib import Path
from typing import Dict, List

import torch
from torch import Tensor

from mmseg_cvpt.engine.cli import add_debug_argument, run_tool
from mmseg_cvpt.models.prompt_statistics import (calibrate_prompts,
                                                 prompt_query_vectors)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prompt_attention import (METHODS, add_model_arguments,  # noqa: E402
                              build, check_model_arguments, load_images,
                              load_state)

HISTOGRAM_RANGE = 8.  # standard deviations


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Kurtosis of the vectors prompts meet in attention, '
        'before and after whitening, per layer (VPT-deep and CVPT).')
    add_model_arguments(parser)
    parser.set_defaults(num_random_images=16)
    parser.add_argument('--eps', type=float, default=1e-3,
                        help='whitening regulariser, relative to the mean '
                        'eigenvalue (WhitenedPrompts\' eps)')
    parser.add_argument('--out', type=Path,
                        default=Path('work_dirs/burstiness'))
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if not args.eps > 0:
        parser.error(f'--eps must be > 0, got {args.eps}')
    check_model_arguments(parser, args)
    return args


def excess_kurtosis(values: Tensor) -> float:
    """Mean over columns of E[(v - mu)^4] / var^2 - 3 (constant columns
    left out)."""
    centred = values - values.mean(0)
    var = centred.square().mean(0)
    kept = var > var.max() * 1e-12
    fourth = centred[:, kept].pow(4).mean(0)
    return (fourth / var[kept].square() - 3).mean().item()


def standardised(values: Tensor) -> Tensor:
    centred = values - values.mean(0)
    return (centred / centred.std(0).clamp_min(1e-12)).flatten()


def measure(backbone: str, args, images: Tensor, state) -> List[Dict]:
    """One row per prompted layer, with the pooled standardised values."""
    model = build(backbone, 1, args, state,
                  prompt_cfg=dict(type='WhitenedPrompts', eps=args.eps))
    statistics, _ = calibrate_prompts(model, [images])
    with torch.no_grad():
        vectors = [z.double() for _, z in prompt_query_vectors(model, images)]
    whitening = model.prompts.whitening.double()
    eigenvalues = torch.linalg.eigvalsh(statistics)
    rows = []
    for layer, z in enumerate(vectors):
        white = z @ whitening[layer]
        rows.append(
            dict(
                method=METHODS[backbone],
                layer=layer + 1,
                tokens=z.shape[0],
                kurtosis_raw=excess_kurtosis(z),
                kurtosis_white=excess_kurtosis(white),
                condition=(eigenvalues[layer, -1] /
                           eigenvalues[layer, 0].clamp_min(1e-300)).item(),
                raw=standardised(z),
                white=standardised(white)))
    return rows


COLUMNS = ('method', 'layer', 'tokens', 'kurtosis_raw', 'kurtosis_white',
           'condition')


def write_reports(rows: List[Dict], args) -> str:
    with open(args.out / 'burstiness.csv', 'w', newline='') as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        writer.writerows([[row[c] for c in COLUMNS] for row in rows])
    header = ('| method | layer | query tokens | excess kurtosis of z | '
              'of whitened z | condition number of S |\n|---|---|---|---|'
              '---|---|\n')
    table = header + ''.join(
        f"| {r['method']} | {r['layer']} | {r['tokens']} | "
        f"{r['kurtosis_raw']:.2f} | {r['kurtosis_white']:.2f} | "
        f"{r['condition']:.3g} |\n" for r in rows)
    source = (f'checkpoint {args.checkpoint}' if args.checkpoint else
              'random weights')
    images = (f'{len(args.images)} images' if args.images else
              f'{args.num_random_images} random images')
    report = (f'Burstiness of the prompts\' query vectors z ({source}, '
              f'{images}, {args.img_size}x{args.img_size}, eps '
              f'{args.eps:g}):\n\n{table}')
    (args.out / 'burstiness.md').write_text(report)
    return report


def plot(rows: List[Dict], args) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (by_layer, histogram) = plt.subplots(1, 2, figsize=(10, 3.8))
    bins = torch.linspace(-HISTOGRAM_RANGE, HISTOGRAM_RANGE, 81)
    for method, colour in zip(METHODS.values(), ('C0', 'C1')):
        mine = [r for r in rows if r['method'] == method]
        layers = [r['layer'] for r in mine]
        for key, style, label in (('raw', '-', 'z'),
                                  ('white', '--', 'whitened z')):
            by_layer.plot(layers, [r[f'kurtosis_{key}'] for r in mine],
                          style, color=colour, marker='.',
                          label=f'{method}, {label}')
            pooled = torch.cat([r[key] for r in mine]).float()
            density = torch.histogram(pooled, bins, density=True)[0]
            histogram.semilogy((bins[1:] + bins[:-1]) / 2, density, style,
                               color=colour, label=f'{method}, {label}')
    gaussian = torch.distributions.Normal(0., 1.)
    centres = torch.linspace(-4, 4, 81)
    histogram.semilogy(centres, gaussian.log_prob(centres).exp(), ':',
                       color='grey', label='Gaussian')
    by_layer.set(xlabel='layer', ylabel='excess kurtosis (0: Gaussian)',
                 title='per layer')
    histogram.set(xlabel='standardised coordinate', ylabel='density',
                  title='all layers', ylim=(1e-6, 1))
    for ax in (by_layer, histogram):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / 'burstiness.png', dpi=110)
    plt.close(fig)


def main(argv=None) -> List[Dict]:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    images = load_images(args.images, args.img_size, args.num_random_images)
    state = load_state(args.checkpoint, args.prefix)
    rows = [row for backbone in METHODS
            for row in measure(backbone, args, images, state)]
    print(write_reports(rows, args))
    plot(rows, args)
    print(f'Wrote {args.out}/burstiness.md, .csv and .png')
    return rows


if __name__ == '__main__':
    run_tool(main)
