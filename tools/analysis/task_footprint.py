"""What a task costs: checkpoint bytes, and resident memory of many tasks.

``sizes`` builds a config's model without pretrained weights (random frozen
ViT, saved once as its base checkpoint), takes one AdamW step so that the
optimiser holds its state, and writes what the runner writes, a full and a
tuned-only checkpoint (model + optimiser), then the task package and the
full checkpoint ``tools/export_task.py`` makes (model only); prints their
bytes.

``memory`` makes task packages of one classification config for several
tasks (random prompts and heads on one random base), then measures in fresh
processes the resident memory (Linux: VmRSS after ``malloc_trim``, so that
what the loaders freed counts as freed; and the peak, VmHWM) of one
``MultiTaskModel`` holding them all against one full model per task (each
loaded from its full checkpoint).

Examples::

    python tools/analysis/task_footprint.py sizes \
        configs/cvpt/upernet_vitb_ade20k.py
    python tools/analysis/task_footprint.py sizes \
        configs/cvpt/vitb_vtab_fgvc.py --cfg-options task=dtd
    python tools/analysis/task_footprint.py memory \
        configs/cvpt/vitb_vtab_fgvc.py \
        --tasks cifar caltech101 dtd oxford_flowers102 oxford_iiit_pet
"""
import argparse
import ctypes
import json
import os.path as osp
import subprocess
import sys
import tempfile
import warnings

import torch
from mmengine.config import DictAction
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from mmseg_cvpt.apis import (MultiTaskModel, build_model, export_task,
                             model_meta)
from mmseg_cvpt.apis.task_package import (build_from_checkpoint, save_file,
                                          write_base)
from mmseg_cvpt.engine import load_config
from mmseg_cvpt.engine.cli import add_debug_argument, run_tool
from mmseg_cvpt.models import backbone_of, tuned_state_dict

# mmengine re-imports the deprecated pkg_resources for every `pkg::` base
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    sizes = commands.add_parser('sizes', help='checkpoint bytes')
    memory = commands.add_parser('memory', help='resident memory of tasks')
    for command in (sizes, memory):
        command.add_argument('config')
        command.add_argument('--cfg-options', nargs='+', action=DictAction)
        command.add_argument(
            '--work-dir', help='where the files go (default: a temporary '
            'folder, removed afterwards)')
    memory.add_argument('--tasks', nargs='+', required=True)
    measure = commands.add_parser('measure', help=argparse.SUPPRESS)
    measure.add_argument('mode', choices=['shared', 'full'])
    measure.add_argument('checkpoints', nargs='+')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def checkpoint_sizes(config: str, options: dict, work_dir: str) -> dict:
    """Bytes of the full and the tuned-only runner-like checkpoint and of
    the task package of the config's model."""
    cfg = load_config(config, options)
    model = build_model(cfg)
    backbone, _ = backbone_of(model)
    write_base(backbone, osp.join(work_dir, 'base.pth'))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable)
    for param in trainable:
        param.grad = torch.zeros_like(param)
    optimizer.step()
    paths = {
        kind: osp.join(work_dir, f'{kind}.pth')
        for kind in ('full', 'tuned_only', 'task_package', 'full_export')
    }
    state = model.state_dict()
    for kind, weights in (('full', state),
                          ('tuned_only', tuned_state_dict(model, state))):
        save_file(
            dict(meta=model_meta(cfg, model), state_dict=weights,
                 optimizer=optimizer.state_dict()), paths[kind])
    export_task(paths['tuned_only'], paths['task_package'])
    export_task(paths['task_package'], paths['full_export'], full=True)
    return dict(
        parameters=sum(p.numel() for p in model.parameters()),
        trainable=sum(p.numel() for p in trainable),
        **{kind: osp.getsize(path) for kind, path in paths.items()})


def memory_kib(field: str = 'VmRSS') -> int:
    """This process's resident memory (VmRSS) or its peak (VmHWM), KiB,
    after glibc returned the memory freed so far to the system."""
    ctypes.CDLL('libc.so.6').malloc_trim(0)
    with open('/proc/self/status') as f:
        line = next(line for line in f if line.startswith(f'{field}:'))
    return int(line.split()[1])


def measure(mode: str, checkpoints: list) -> dict:
    """Resident memory before and after loading the checkpoints: as task
    packages of one ``MultiTaskModel`` ('shared') or as full models."""
    before = memory_kib()
    if mode == 'shared':
        kept = MultiTaskModel(
            {f'task{i}': path for i, path in enumerate(checkpoints)})
    else:
        kept = []
        for path in checkpoints:
            model, checkpoint, _ = build_from_checkpoint(path)
            _load_checkpoint_to_model(model, checkpoint, strict=True)
            kept.append(model)
            del checkpoint
    after = memory_kib()  # with every model still held in ``kept``
    del kept
    return dict(mode=mode, tasks=len(checkpoints), before_kib=before,
                after_kib=after, peak_kib=memory_kib('VmHWM'))


def make_tasks(config: str, options: dict, tasks: list,
               work_dir: str) -> dict:
    """Per task a full checkpoint and a task package, tuned (randomly) on
    one random base."""
    made, base = {}, osp.join(work_dir, 'base.pth')
    for task in tasks:
        cfg = load_config(config, dict(options or {}, task=task))
        model = build_model(cfg)
        backbone, _ = backbone_of(model)
        if not osp.isfile(base):
            write_base(backbone, base)
        backbone.init_cfg = dict(type='Pretrained', checkpoint=base)
        model.init_weights()
        full = osp.join(work_dir, f'{task}_full.pth')
        save_file(dict(meta=model_meta(cfg, model),
                       state_dict=model.state_dict()), full)
        export_task(full, osp.join(work_dir, f'{task}_task.pth'))
        made[task] = full
    return made


def memory(config: str, options: dict, tasks: list, work_dir: str) -> list:
    fulls = list(make_tasks(config, options, tasks, work_dir).values())
    runs = []
    for mode, paths in (('shared', [p.replace('_full', '_task')
                                    for p in fulls]), ('full', fulls)):
        out = subprocess.run(
            [sys.executable, __file__, 'measure', mode, *paths],
            check=True, stdout=subprocess.PIPE, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    return runs


def main(argv=None):
    args = parse_args(argv)
    if args.command == 'measure':
        print(json.dumps(measure(args.mode, args.checkpoints)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = args.work_dir or tmp
        if args.command == 'sizes':
            sizes = checkpoint_sizes(args.config, args.cfg_options, work_dir)
            print(f'{sizes["parameters"]:,} parameters, '
                  f'{sizes["trainable"]:,} trainable')
            for kind in ('full', 'tuned_only', 'task_package',
                         'full_export'):
                print(f'  {kind:<13} {sizes[kind]:>15,} bytes')
            return
        for run in memory(args.config, args.cfg_options, args.tasks,
                          work_dir):
            grown = (run['after_kib'] - run['before_kib']) / 1024
            print(f'  {run["mode"]:<7} {run["tasks"]} tasks: resident '
                  f'{run["after_kib"] / 1024:,.0f} MiB, '
                  f'{grown:,.0f} MiB for the models, peak '
                  f'{run["peak_kib"] / 1024:,.0f} MiB')


if __name__ == '__main__':
    run_tool(main)
