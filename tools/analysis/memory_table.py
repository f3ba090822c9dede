"""Peak training memory of the methods on large frozen ViTs, with and
without activation checkpointing of the frozen blocks.

For each ``--archs`` ViT (``benchmark.py``'s: ViT-B/16, ViT-L/16,
DINOv2-B/14, DINOv2-L/14, random weights) and method, one training step
(``benchmark.train_step``: forward, loss, backward to what the method
tunes; the frozen ViT's down to its patch embeddings) at ``--size`` with
``--prompts`` prompts, batch ``--batch``, once with the blocks' activations
kept for the backward pass and once with ``with_cp=True`` (the blocks
recomputed in the backward pass: mmseg's ViT argument, TimmViT's). The
peak is that of the tensors the step allocates (``meters.peak_memory``:
the frozen weights, there before, are not counted), on the CPU. Sizes that
are not a multiple of an arch's patch become the nearest one above (518
for 512 on the /14 models). Writes ``memory.md`` and ``memory.csv``.

Example (the table of docs/performance.md)::

    python tools/analysis/memory_table.py \\
        --archs vit_b16 vit_l16 dinov2_b14 dinov2_l14 --size 512 \\
        --prompts 200 --methods frozen vpt cvpt lora --batch 1 \\
        --out work_dirs/memory
"""
import argparse
import math
import sys
from functools import partial
from pathlib import Path
from typing import List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import (ARCHS, METHODS, Config, build,  # noqa: E402
                       embeddings_require_grad, positive_int, train_step)
from benchmark_report import machine  # noqa: E402
from meters import peak_memory  # noqa: E402
from report_files import write_csv  # noqa: E402

from mmseg_cvpt.engine.cli import add_debug_argument, run_tool  # noqa: E402
from mmseg_cvpt.models.costs import shape_of  # noqa: E402


def with_checkpointing(arch: dict, with_cp: bool) -> dict:
    """The arch's ViT arguments with ``with_cp``."""
    if 'vit' in arch:
        return dict(vit=dict(arch['vit'], with_cp=with_cp))
    return dict(arch, with_cp=with_cp)


def patch_multiple(arch: dict, size: int) -> int:
    patch = shape_of(arch, 1, 0, 1).patch_size
    return patch * math.ceil(size / patch)


def measure(arch_name: str, method: str, size: int, prompts: int,
            batch: int) -> dict:
    """One row: the step's peak MiB without and with checkpointing."""
    arch = ARCHS[arch_name]
    size = patch_multiple(arch, size)
    with_prompts = METHODS[method].with_prompts and method != 'frozen'
    config = Config(size, method, prompts if with_prompts else 0)
    images = torch.randn(batch, 3, size, size)
    row = dict(arch=arch_name, size=size, method=METHODS[method].label,
               prompts=config.prompts, batch=batch)
    for with_cp in (False, True):
        torch.manual_seed(0)
        model = build(config, with_checkpointing(arch, with_cp)).train()
        if method == 'frozen':
            embeddings_require_grad(model)
        assert all(block.with_cp == with_cp for block in model.vit.blocks)
        key = 'checkpointed_mib' if with_cp else 'kept_mib'
        row[key] = peak_memory(partial(train_step, model, images))
        del model  # before the next one is built
    row['ratio'] = row['checkpointed_mib'] / row['kept_mib']
    return row


def markdown(rows: List[dict]) -> str:
    lines = ['| ViT | size | method | P | batch | peak MiB, activations '
             'kept | peak MiB, checkpointed | checkpointed / kept |',
             '|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['arch']} | {r['size']} | {r['method']} | "
                     f"{r['prompts']} | {r['batch']} | {r['kept_mib']:.0f} | "
                     f"{r['checkpointed_mib']:.0f} | {r['ratio']:.3f} |")
    return '\n'.join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--archs', nargs='+', choices=ARCHS,
                        default=list(ARCHS))
    parser.add_argument('--size', type=positive_int, default=512)
    parser.add_argument('--prompts', type=positive_int, default=200)
    parser.add_argument('--methods', nargs='+', choices=METHODS,
                        default=['frozen', 'vpt', 'cvpt'])
    parser.add_argument('--batch', type=positive_int, default=1)
    parser.add_argument('--out', type=Path, default=Path('work_dirs/memory'))
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for arch in args.archs:
        for method in args.methods:
            rows.append(measure(arch, method, args.size, args.prompts,
                                args.batch))
            print(f"  {arch} {method}: {rows[-1]['kept_mib']:.0f} -> "
                  f"{rows[-1]['checkpointed_mib']:.0f} MiB", flush=True)
    command = 'python ' + ' '.join([sys.argv[0]] + sys.argv[1:])
    report = '\n\n'.join([f'Command: `{command}`', f'Machine: {machine()}',
                          markdown(rows)])
    (args.out / 'memory.md').write_text(report + '\n')
    write_csv(args.out / 'memory.csv', rows)
    print('\n' + report)


if __name__ == '__main__':
    run_tool(main)
