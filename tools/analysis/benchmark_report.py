"""The reports of tools/analysis/benchmark.py: the table (markdown and
CSV), the counted FLOPs against the multiply-add formulas, the machine, and
the plot of cost against P."""
import os
import platform
import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from report_files import NO_MATPLOTLIB, pyplot, write_csv

DEFINITIONS = ('Definitions of the methods, the train step, the floor, time, '
               'peak memory and GFLOPs: docs/performance.md')

COLUMNS = [  # (key, header, format)
    ('size', 'size', '{}'),
    ('method', 'method', '{}'),
    ('prompts', 'P', '{}'),
    ('trainable', 'trainable params', '{:,}'),
    ('train_gflops', 'train GFLOPs', '{:.1f}'),
    ('infer_gflops', 'inference GFLOPs', '{:.1f}'),
    ('train_ms', 'train step ms', '{:.0f}'),
    ('train_vs_floor', 'train / floor', '{:.3f}'),
    ('infer_ms', 'inference ms', '{:.0f}'),
    ('infer_vs_frozen', 'inference / frozen', '{:.3f}'),
    ('train_peak_mib', 'train peak MiB', '{:.0f}'),
    ('infer_peak_mib', 'inference peak MiB', '{:.0f}'),
]


def markdown_table(rows: List[dict]) -> str:
    lines = ['| ' + ' | '.join(h for _, h, _ in COLUMNS) + ' |',
             '|' + '---|' * len(COLUMNS)]
    for row in rows:
        lines.append('| ' + ' | '.join(fmt.format(row[key])
                                        for key, _, fmt in COLUMNS) + ' |')
    return '\n'.join(lines)


def formula_agreement(rows: List[dict]) -> str:
    """Counted FLOPs against the multiply-add formulas, row by row."""
    lines = ['FLOPs counted / formula (docs/performance.md):', '',
             '| size | method | P | train | inference |',
             '|---|---|---|---|---|']
    for row in rows:
        lines.append(
            f"| {row['size']} | {row['method']} | {row['prompts']} | "
            f"{row['train_gflops'] / row['train_gflops_formula']:.4f} | "
            f"{row['infer_gflops'] / row['infer_gflops_formula']:.4f} |")
    return '\n'.join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as info:
            cpu = re.search(r'model name\s*:\s*(.*)', info.read())[1]
    except (OSError, TypeError):
        pass
    return (f'{cpu}, {os.cpu_count()} logical CPUs, torch '
            f'{torch.__version__} with {torch.get_num_threads()} threads, '
            f'python {platform.python_version()}')


def plot(rows: List[dict], path: Path, frozen_label: str,
         labels: Sequence[str]) -> Optional[str]:
    """Cost against P of the methods ``labels`` (those in the rows), one
    row of panels per size; None, or why there is no plot."""
    plt = pyplot()
    if plt is None:
        return NO_MATPLOTLIB
    labels = [label for label in labels
              if any(r['method'] == label for r in rows)]
    panels = [('train_ms', 'train step (ms)'), ('infer_ms', 'inference (ms)'),
              ('train_peak_mib', 'train peak memory (MiB)'),
              ('train_gflops', 'train GFLOPs')]
    sizes = sorted({r['size'] for r in rows})
    fig, axes = plt.subplots(len(sizes), len(panels),
                             figsize=(4 * len(panels), 3.2 * len(sizes)),
                             squeeze=False)
    for ax_row, size in zip(axes, sizes):
        frozen = next(r for r in rows if r['size'] == size
                      and r['method'] == frozen_label)
        for ax, (key, title) in zip(ax_row, panels):
            for label in labels:
                points = [frozen] + [r for r in rows if r['size'] == size
                                     and r['method'] == label]
                ax.plot([r['prompts'] for r in points],
                        [r[key] for r in points], marker='o', label=label)
            ax.axhline(frozen[key], color='gray', linestyle='--',
                       label='frozen ViT (P=0)')
            ax.set_title(f'{size}x{size}: {title}', fontsize=10)
            ax.set_xlabel('prompts P')
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_reports(out: Path, command: str, settings: str, rows: List[dict],
                  raw: List[dict], frozen_label: str,
                  labels: Sequence[str]) -> Tuple[str, Optional[str]]:
    """benchmark.md, benchmark.csv, benchmark_raw.csv and benchmark.png in
    ``out``; returns the report and None, or why there is no plot."""
    note = plot(rows, out / 'benchmark.png', frozen_label, labels)
    report = '\n\n'.join([
        f'Command: `{command}`',
        f'Machine: {machine()}; {settings}',
        markdown_table(rows),
        formula_agreement(rows),
        DEFINITIONS,
    ] + ([note] if note else []))
    (out / 'benchmark.md').write_text(report + '\n')
    write_csv(out / 'benchmark.csv', rows)
    write_csv(out / 'benchmark_raw.csv', raw)
    return report, note
