"""Classification on VTAB-1K / FGVC: task table, datasets, the shared config,
a tiny CVPT training run through mmengine's Runner, and the results table."""
import copy
import csv
import io
import json
import os.path as osp
import sys
from contextlib import redirect_stdout
from statistics import mean

import pytest
from mmengine import Config

from mmseg_cvpt.datasets import (FGVC, TASKS, VTAB1k, VTAB_GROUPS,
                                 resolve_task)
from mmseg_cvpt.datasets.results_table import load_rows, write_table
from tiny_runs import run_cli_in_process
from tool_loading import load_tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = {
    method: osp.join(ROOT, 'configs', method, 'vitb_vtab_fgvc.py')
    for method in ('cvpt', 'vpt')
}
NUM_CLASSES = 4  # classes in the generated data


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cls_demo'))
    load_tool('misc/make_cls_demo_data.py').make_demo_data(
        root, vtab_tasks=('dtd', ), fgvc_tasks=('cub', ),
        num_classes=NUM_CLASSES, size=32,
        counts=dict(train=10, val=4, test=10), seed=0)
    return root


def print_config(config, *options):
    """tools/misc/print_config.py, in-process; returns its output."""
    tool = load_tool('misc/print_config.py')
    out = io.StringIO()
    argv = [config, '--cfg-options', *options]
    with redirect_stdout(out), pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, 'argv', ['print_config.py', *argv])
        tool.main()
    return out.getvalue()


def test_print_config_resolves_dtd():
    """The documented command, as its command line runs it (in this
    process)."""
    status, out = run_cli_in_process(
        'misc/print_config.py', [CONFIGS['cvpt'], '--cfg-options', 'task=dtd'])
    assert status == 0, out[-3000:]
    assert 'num_classes=47' in out
    assert 'num_prompts=10' in out
    assert 'lr=0.001' in out
    assert "data_root='data/vtab-1k/dtd'" in out
    assert "split='train800'" in out and "split='val200'" in out
    assert "split='test'" not in out


@pytest.mark.parametrize('method', ['cvpt', 'vpt'])
def test_all_tasks_resolve(method):
    base = Config.fromfile(CONFIGS[method])
    for name, task in TASKS.items():
        out = print_config(CONFIGS[method], f'task={name}')
        assert f'num_classes={task.num_classes},' in out, name
        assert f'num_prompts={task.num_prompts},' in out, name
        assert f'lr={task.lr},' in out, name

        for final in (False, True):
            cfg = copy.deepcopy(base)
            cfg.merge_from_dict(dict(task=name, final=final))
            assert resolve_task(cfg) is task
            root = osp.join(
                'data/vtab-1k' if task.benchmark == 'vtab' else 'data/fgvc',
                task.folder)
            train = cfg.train_dataloader.dataset
            test = cfg.test_dataloader.dataset
            assert train.data_root == test.data_root == root
            assert train.num_classes == task.num_classes
            assert cfg.model.head.num_classes == task.num_classes
            assert cfg.model.backbone.vit.num_prompts == task.num_prompts
            assert cfg.optim_wrapper.optimizer.lr == task.lr
            assert cfg.param_scheduler[0].start_factor == pytest.approx(
                1e-6 / task.lr)
            if final:  # train on train+val, test on test, no validation
                assert train.split in ('train800val200', 'trainval')
                assert test.split == 'test'
                assert cfg.val_dataloader is None
                assert 'save_best' not in cfg.default_hooks.checkpoint
            else:  # the test split is never read
                assert train.split in ('train800', 'train')
                assert test.split == cfg.val_dataloader.dataset.split
                assert test.split in ('val200', 'val')


def test_command_line_values_win():
    cfg = Config.fromfile(CONFIGS['cvpt'])
    cfg.merge_from_dict({
        'task': 'dtd',
        'model.backbone.vit.num_prompts': 200,
        'optim_wrapper.optimizer.lr': 5e-3
    })
    resolve_task(cfg)
    assert cfg.model.backbone.vit.num_prompts == 200
    assert cfg.optim_wrapper.optimizer.lr == 5e-3
    assert cfg.model.head.num_classes == 47


def test_unknown_or_missing_task():
    cfg = Config.fromfile(CONFIGS['cvpt'])
    cfg.task = 'dtdd'
    with pytest.raises(ValueError, match="unknown task 'dtdd'; valid tasks: "
                       'cifar, caltech101, dtd'):
        resolve_task(cfg)
    cfg.task = None
    with pytest.raises(ValueError, match='choose a task with --cfg-options'):
        resolve_task(cfg)
    # configs without a task (segmentation) are left alone
    assert resolve_task(Config(dict(model=dict()))) is None


def test_datasets_read_the_layouts(demo_root):
    dtd = osp.join(demo_root, 'vtab-1k', 'dtd')
    cub = osp.join(demo_root, 'fgvc', 'CUB_200_2011')
    sizes = {
        split: len(VTAB1k(data_root=dtd, split=split, num_classes=47))
        for split in VTAB1k.SPLITS
    }
    per_class = dict(train800=10, val200=4, train800val200=14, test=10)
    assert sizes == {s: n * NUM_CLASSES for s, n in per_class.items()}
    trainval = FGVC(data_root=cub, split='trainval', img_dir='images')
    assert len(trainval) == 14 * NUM_CLASSES
    img_path = trainval.get_data_info(0)['img_path']
    assert osp.isfile(img_path) and '/images/train/' in img_path
    assert sorted(set(trainval.get_gt_labels())) == list(range(NUM_CLASSES))


def test_missing_annotation_file(tmp_path):
    with pytest.raises(
            FileNotFoundError,
            match='VTAB-1K annotation file not found: .*val200.txt'):
        VTAB1k(data_root=str(tmp_path), split='val200')
    (tmp_path / 'train.json').write_text(json.dumps({'a.jpg': 0}))
    with pytest.raises(FileNotFoundError,
                       match='FGVC annotation file not found: .*val.json'):
        FGVC(data_root=str(tmp_path), split='trainval')
    (tmp_path / 'test.txt').write_text('images/a.jpg 5\n')
    with pytest.raises(ValueError, match=r'label 5 out of range \[0, 2\) at '
                       r'.*test.txt:1'):
        VTAB1k(data_root=str(tmp_path), split='test', num_classes=2)


def tiny_options(demo_root):
    """Config overrides: a 2-layer, 32-dim ViT on the 32 px demo data, CPU."""
    vit = dict(img_size=(32, 32), patch_size=8, embed_dims=32, num_layers=2,
               num_heads=2, mlp_ratio=2, drop_path_rate=0., init_cfg=None)
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(32, 32)),
        dict(type='PackInputs')
    ]
    options = {
        'vtab_root': osp.join(demo_root, 'vtab-1k'),
        'fgvc_root': osp.join(demo_root, 'fgvc'),
        'model.head.in_channels': 32,
        'train_cfg.max_epochs': 8,
        'param_scheduler.0.end': 1,
        'param_scheduler.1.begin': 1,
        'param_scheduler.1.end': 8,
        'default_hooks.checkpoint.interval': 100,
        'log_level': 'WARNING',
    }
    options.update({f'model.backbone.vit.{k}': v for k, v in vit.items()})
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options.update({
            f'{loader}.batch_size': 8,
            f'{loader}.num_workers': 0,
            f'{loader}.persistent_workers': False,
            f'{loader}.dataset.pipeline': pipeline
        })
    return options


def test_tiny_cvpt_beats_chance_and_table(demo_root, tmp_path):
    """Final-mode runs (train800val200 -> test) on dtd and cub through the
    runner tool, then the table's means from the per-task numbers."""
    runner_tool = load_tool('vtab_fgvc.py')
    options = tiny_options(demo_root)
    for task in ('dtd', 'cub'):
        runner_tool.run_task(CONFIGS['cvpt'], task, str(tmp_path / task),
                             final=True, options=options)
    results = {}
    for task in ('dtd', 'cub'):
        with open(tmp_path / task / 'results.json') as f:
            results[task] = json.load(f)
        # 4 classes in the data: chance is 25 %
        assert results[task]['test']['top1'] > 60, results[task]
        params = results[task]['params']
        assert params['backbone_trainable'] == 2 * TASKS[task].num_prompts * 32
        assert params['trainable'] == (params['backbone_trainable'] +
                                       33 * TASKS[task].num_classes)

    table = load_tool('analysis/vtab_fgvc_table.py')
    argv = [str(tmp_path / 'dtd'), str(tmp_path / 'cub'), '--out',
            str(tmp_path / 'table')]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, 'argv', ['vtab_fgvc_table.py', *argv])
        table.main()
    with open(tmp_path / 'table.csv') as f:
        rows = {row['entry']: row['CVPTViT'] for row in csv.DictReader(f)}
    dtd, cub = (results[t]['test']['top1'] for t in ('dtd', 'cub'))
    assert float(rows['dtd']) == pytest.approx(dtd, abs=0.005)
    assert float(rows['Natural mean']) == pytest.approx(dtd, abs=0.005)
    assert float(rows['VTAB mean (of group means)']) == pytest.approx(
        dtd, abs=0.005)
    assert float(rows['FGVC mean']) == pytest.approx(cub, abs=0.005)
    assert rows['Specialized mean'] == ''
    assert rows['evaluated on'] == 'test'
    markdown = (tmp_path / 'table.md').read_text()
    assert '| Natural mean | ' in markdown and '(1/7)' in markdown


def test_table_means(tmp_path):
    top1 = dict(cifar=80., dtd=70., eurosat=90., kitti=60., dmlab=50.,
                cub=85., nabirds=75.)
    rows = [dict(method='CVPT', task=t, top1=v, split='test',
                 trainable_params=1000, backbone_trainable_params=100)
            for t, v in top1.items()]
    rows += [dict(method='VPT', task=t, top1=v - 10, split='test',
                  trainable_params=2000, backbone_trainable_params=500)
             for t, v in top1.items()]
    (tmp_path / 'rows.json').write_text(json.dumps(rows))
    write_table(load_rows([str(tmp_path / 'rows.json')]),
                str(tmp_path / 'table'))
    with open(tmp_path / 'table.csv') as f:
        table = {row['entry']: row for row in csv.DictReader(f)}
    groups = (75., 90., 55.)  # natural, specialized, structured
    expected = {
        'Natural mean': 75., 'Specialized mean': 90., 'Structured mean': 55.,
        'VTAB mean (of group means)': mean(groups),
        'VTAB mean (of tasks)': mean([80., 70., 90., 60., 50.]),
        'FGVC mean': 80.,
        'trainable params, backbone (M)': 0.0001,
        'trainable params, with head (M)': 0.001,
    }
    for entry, value in expected.items():
        assert float(table[entry]['CVPT']) == pytest.approx(value, abs=5e-3)
    assert float(table['FGVC mean']['VPT']) == pytest.approx(70.)
    assert float(table['VTAB mean (of group means)']['VPT']) == \
        pytest.approx(mean(groups) - 10, abs=5e-3)
    assert list(table)[:7] == [
        'cifar', 'dtd', 'eurosat', 'dmlab', 'kitti', 'cub', 'nabirds']
    assert len(VTAB_GROUPS['structured']) == 8


def test_tiny_bpt_calibrates_in_mmpretrain(demo_root, tmp_path):
    """configs/bpt/vitb_vtab_fgvc.py: VPT-deep with bilinear prompts (m=50,
    p=25), calibrated by PromptCalibrationHook in mmpretrain's runner."""
    import torch
    config = osp.join(ROOT, 'configs', 'bpt', 'vitb_vtab_fgvc.py')
    options = dict(tiny_options(demo_root), **{
        'train_cfg.max_epochs': 2, 'param_scheduler.1.end': 2})
    runner = load_tool('vtab_fgvc.py').run_task(
        config, 'dtd', str(tmp_path / 'dtd'), final=True, options=options)
    provider = runner.model.backbone.vit.prompts
    assert type(provider).__name__ == 'BilinearPrompts'
    assert provider.is_calibrated
    assert not torch.equal(provider.basis[0], torch.eye(32, 25))
    with open(tmp_path / 'dtd' / 'results.json') as f:
        results = json.load(f)
    assert results['params']['backbone_trainable'] == 2 * (50 + 32) * 25
    assert 'top1' in results['test']
