"""Write the VTAB-1K / FGVC results table (Markdown and CSV).

Inputs are finished run folders (each with the ``results.json`` that
``TaskResultsHook`` writes), JSON files (a list of rows) or CSV files
(columns ``method,task,top1`` and optionally ``split``,
``trainable_params``, ``backbone_trainable_params``)::

    python tools/analysis/vtab_fgvc_table.py work_dirs/cvpt/* \
        work_dirs/vpt/* --out work_dirs/vtab_fgvc

writes ``work_dirs/vtab_fgvc.md`` and ``work_dirs/vtab_fgvc.csv``. See
``mmseg_cvpt/datasets/results_table.py`` for how the means are taken.
"""
import argparse

from mmseg_cvpt.datasets.results_table import load_rows, write_table
from mmseg_cvpt.engine.cli import add_debug_argument, run_tool


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'sources', nargs='+', help='run folders, .json or .csv files')
    parser.add_argument(
        '--out', required=True, help='output prefix (.md and .csv added)')
    add_debug_argument(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    for path in write_table(load_rows(args.sources), args.out):
        print(f'wrote {path}')


if __name__ == '__main__':
    run_tool(main)
