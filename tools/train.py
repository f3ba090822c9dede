"""Train a segmentor; mmseg's tools/train.py for mmseg_cvpt configs.

Differences from mmseg's: ``mmseg_cvpt`` is imported before the config is
read (so that ``mmseg_cvpt::`` bases resolve and our modules are registered),
``--launcher pytorch`` works on machines without CUDA (gloo), missing data
or pretrained weights stop the run before it starts, all of them named at
once, ``--resume`` falls back to the newest intact checkpoint when
``last_checkpoint`` is missing, empty or dangling, temporary files of
interrupted checkpoint writes are removed, a distributed peer that stops
responding ends the run with an error that says so, a second training in a
work dir that a live one holds (``work_dir/.train.lock``) is refused, and
``--resume`` with another number of processes than the checkpoint's run
warns (an error with ``--strict-resume``; see ``WorldSizeCheckHook``).

Example::

    python tools/train.py configs/cvpt/upernet_vitb_ade20k.py
    bash tools/dist_train.sh configs/cvpt/upernet_vitb_ade20k.py 8
"""
import argparse
import logging
import warnings

import mmseg_cvpt  # noqa: F401  (registers our modules, mmseg_cvpt:: bases)
from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from mmseg_cvpt.engine import (add_run_arguments, amp_optim_wrapper,
                               check_train_inputs,
                               end_distributed, find_resume_checkpoint,
                               load_config, remove_stale_temporaries,
                               report_lost_peers, set_strict_resume,
                               start_distributed, trace_data_dependent_shapes,
                               train_lock)
from mmseg_cvpt.engine.cli import add_debug_argument, run_tool

# mmengine re-imports the deprecated pkg_resources for every `pkg::` base
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')


def parse_args():
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        action='store_true',
        default=False,
        help='resume from the latest checkpoint in the work_dir automatically')
    parser.add_argument(
        '--strict-resume',
        action='store_true',
        default=False,
        help='with --resume, a checkpoint saved with another world size '
        '(number of processes) is an error instead of a warning: the '
        'effective batch size and the data order would change')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='mixed precision: bf16 autocast where the device supports it '
        '(CPUs, recent GPUs), fp16 with dynamic loss scaling otherwise')
    parser.add_argument(
        '--compile',
        action='store_true',
        default=False,
        help='torch.compile the train step (mmengine\'s compile=True; '
        'options from the config\'s `compile` dict where it has one)')
    add_run_arguments(parser)
    add_debug_argument(parser)
    return parser.parse_args()


def main():
    args = parse_args()

    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    cfg.launcher = args.launcher

    if args.amp:
        cfg.optim_wrapper = amp_optim_wrapper(cfg.optim_wrapper)
    if args.compile and not cfg.get('compile'):
        cfg.compile = True
    if cfg.get('compile'):
        trace_data_dependent_shapes()
    if args.strict_resume:
        set_strict_resume(cfg)

    check_train_inputs(cfg)
    start_distributed(cfg)
    with train_lock(cfg.work_dir):
        train(cfg, args.resume)
    end_distributed()  # the runner (and its DDP model) gone


def train(cfg, resume):
    """Build the runner and train; the work dir is ours."""
    cfg.resume = resume
    if cfg.resume and cfg.get('load_from') is None:
        resume_from(cfg)
    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    if is_main_process():
        for path in remove_stale_temporaries(runner.work_dir):
            print_log(f'Removed {path}, left by an interrupted write.',
                      logger='current')
    with report_lost_peers(cfg):
        runner.train()


def resume_from(cfg):
    """Resume from the work dir's latest intact checkpoint, if any."""
    cfg.load_from = find_resume_checkpoint(cfg.work_dir)
    if cfg.load_from is None:
        print_log(
            f'--resume: no checkpoint in {cfg.work_dir}; training starts '
            'from the beginning.',
            logger='current',
            level=logging.WARNING)
        cfg.resume = False


if __name__ == '__main__':
    run_tool(main)
