"""Test (and evaluate) a segmentor; mmseg's tools/test.py for mmseg_cvpt.

``--aug-test`` (mmseg 0.x's name; ``--tta`` is an alias) evaluates with the
config's ``tta_pipeline`` and ``tta_model``: for our ADE20K configs 6 scales
(0.5-1.75) x 2 flips = 12 views per image, the multi-scale mIoU.

A domain-generalisation config (``*_gta2city.py``) tests several target data
sets in one run (``MultiTargetDataset``, ``MultiTargetIoUMetric``): the mIoU
of each (``cityscapes/mIoU``, ...) and their mean (``mIoU``), printed as one
table and written to the results JSON and the log, with --aug-test too.

The checkpoint must fit the config's model exactly (``CheckpointCheckHook``
with ``allow_new=False``): a checkpoint of another architecture is an error
naming the keys, not a meaningless mIoU.

Example::

    python tools/test.py configs/cvpt/upernet_vitb_ade20k.py CKPT --aug-test
    bash tools/dist_test.sh configs/cvpt/upernet_vitb_ade20k.py CKPT 8
"""
import argparse
import warnings

import mmseg_cvpt  # noqa: F401  (registers our modules, mmseg_cvpt:: bases)
from mmengine.dist import get_world_size
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from mmseg_cvpt.engine import (add_run_arguments, end_distributed,
                               load_config, report_lost_peers,
                               setup_cpu_distributed)
from mmseg_cvpt.engine.cli import add_debug_argument, run_tool
from mmseg_cvpt.engine.preflight import leaf_datasets
from mmseg_cvpt.models import find_prompted_backbone

# mmengine re-imports the deprecated pkg_resources for every `pkg::` base
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')


def parse_args():
    parser = argparse.ArgumentParser(
        description='MMSeg test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help=('if specified, the evaluation metric results will be dumped '
              'into the directory as json'))
    parser.add_argument(
        '--out',
        type=str,
        help='The directory to save output prediction for offline evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. '
        'If specified, it will be automatically saved '
        'to the work_dir/timestamp/show_dir')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--aug-test',
        '--tta',
        dest='aug_test',
        action='store_true',
        help='test-time augmentation (multi-scale + flip): the config\'s '
        'tta_pipeline and tta_model')
    parser.add_argument(
        '--base-checkpoint',
        help='the frozen ViT of a tuned-only checkpoint, when not at the path '
        'the checkpoint records (the backbone\'s base_checkpoint)')
    add_run_arguments(parser)
    add_debug_argument(parser)
    return parser.parse_args()


def trigger_visualization_hook(cfg, args):
    default_hooks = cfg.default_hooks
    if 'visualization' in default_hooks:
        visualization_hook = default_hooks['visualization']
        visualization_hook['draw'] = True
        if args.show:
            visualization_hook['show'] = True
            visualization_hook['wait_time'] = args.wait_time
        if args.show_dir:
            cfg.visualizer['save_dir'] = args.show_dir
    else:
        raise RuntimeError(
            'VisualizationHook must be included in default_hooks.'
            'refer to usage '
            '"visualization=dict(type=\'VisualizationHook\')"')
    return cfg


def use_tta(cfg):
    """Switch the test data (every data set of a wrapper: each target of a
    domain-generalisation test) and the model to the config's TTA
    versions."""
    for key in ('tta_pipeline', 'tta_model'):
        if key not in cfg:
            raise KeyError(f'--aug-test needs `{key}` in the config')
    for dataset in leaf_datasets(cfg.test_dataloader.dataset):
        dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def report_tta(runner):
    """Log how many views the TTA model merged, where it counts them."""
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    if getattr(model, 'num_images', 0):
        where = ' in this process' if get_world_size() > 1 else ''
        print_log(
            f'Test-time augmentation merged {model.num_views} views of '
            f'{model.num_images} images{where} '
            f'({model.num_views / model.num_images:g} per image).',
            logger='current')


def check_checkpoint_strictly(cfg):
    """Make the config's checkpoint check demand every weight."""
    cfg.default_hooks = dict(
        cfg.get('default_hooks') or {},
        checkpoint_check=dict(type='CheckpointCheckHook', allow_new=False))


def main():
    args = parse_args()

    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    cfg.launcher = args.launcher

    cfg.load_from = args.checkpoint
    check_checkpoint_strictly(cfg)

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    if args.aug_test:
        use_tta(cfg)
    if args.out is not None:
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    setup_cpu_distributed(cfg)

    runner = Runner.from_cfg(cfg)
    if args.base_checkpoint:  # the model is built, the checkpoint not read
        find_prompted_backbone(runner.model).base_checkpoint = \
            args.base_checkpoint
    with report_lost_peers(cfg):
        runner.test()
    if args.aug_test:
        report_tta(runner)
    del runner  # and its DDP model: see end_distributed
    end_distributed()


if __name__ == '__main__':
    run_tool(main)
