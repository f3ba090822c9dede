"""Train (and test) one method on a list of VTAB-1K / FGVC tasks, then write
the results table.

    # selection runs: train800 -> val200 (FGVC: train -> val)
    python tools/vtab_fgvc.py configs/cvpt/vitb_vtab_fgvc.py \
        --tasks dtd cifar --work-dir work_dirs/cvpt_vtab
    # final runs: train800val200 -> test, all 24 tasks
    python tools/vtab_fgvc.py configs/cvpt/vitb_vtab_fgvc.py \
        --tasks all --final --work-dir work_dirs/cvpt_final

Each task runs in ``WORK_DIR/<task>`` through mmengine's Runner (one process,
one task after another); the table goes to ``WORK_DIR/results.{md,csv}``.
``--tasks`` takes task names and the sets ``all``, ``vtab``, ``fgvc``,
``natural``, ``specialized`` and ``structured``.
"""
import argparse
import os.path as osp

from mmengine import DictAction
from mmengine.runner import Runner

from mmseg_cvpt.datasets import FGVC_TASKS, TASKS, VTAB_GROUPS
from mmseg_cvpt.datasets.results_table import load_rows, write_table
from mmseg_cvpt.engine import load_config
from mmseg_cvpt.engine.cli import add_debug_argument, run_tool

TASK_SETS = dict(
    all=tuple(TASKS),
    vtab=tuple(name for names in VTAB_GROUPS.values() for name in names),
    fgvc=FGVC_TASKS,
    **VTAB_GROUPS)


def expand_tasks(names):
    """Task names and set names -> task names, in order, once each."""
    tasks = []
    for name in names:
        for task in TASK_SETS.get(name, (name, )):
            if task not in TASKS:
                raise ValueError(
                    f'unknown task {task!r}; valid tasks: '
                    f'{", ".join(TASKS)}; sets: {", ".join(TASK_SETS)}')
            if task not in tasks:
                tasks.append(task)
    return tasks


def run_task(config: str, task: str, work_dir: str, final: bool,
             options: dict) -> Runner:
    """Train on one task; test the final model in the final mode. Returns
    the runner."""
    cfg = load_config(config, dict(options, task=task, final=final),
                      work_dir)
    runner = Runner.from_cfg(cfg)
    runner.train()
    if final:
        runner.test()
    return runner


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='a VTAB-1K / FGVC config')
    parser.add_argument('--tasks', nargs='+', default=['all'])
    parser.add_argument('--work-dir', required=True)
    parser.add_argument(
        '--final', action='store_true',
        help='train on train800val200 (FGVC: train+val), report test')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        default={}, help='config overrides (key=value)')
    add_debug_argument(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    run_dirs = []
    for task in expand_tasks(args.tasks):
        run_dir = osp.join(args.work_dir, task)
        run_dirs.append(run_dir)
        run_task(args.config, task, run_dir, args.final, args.cfg_options)
    for path in write_table(
            load_rows(run_dirs), osp.join(args.work_dir, 'results')):
        print(f'wrote {path}')


if __name__ == '__main__':
    run_tool(main)
