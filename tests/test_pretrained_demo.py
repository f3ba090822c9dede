"""The embedded pretrained backbone (tools/misc/pretrain_tiny_vit.py) and the
method comparison (tools/analysis/compare_methods.py)."""
import csv
import glob
import hashlib
import json
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS

from mmseg_cvpt.apis.task_package import build_model
from mmseg_cvpt.engine import load_config
from mmseg_cvpt.methods import BUILT_IN
from tiny_runs import (COMPARE_RUNS, DEMO_CFG, REPO, data_options,
                       pretrain_tiny_vit, saved_miou, validation_metric)
from tool_loading import load_tool

SHIPPED = osp.join(REPO, 'pretrain', 'vit_tiny_demo_mmseg.pth')


def demo_backbone(checkpoint):
    """The demo config's backbone, its init_cfg pointed at ``checkpoint``
    and its weights initialised from it."""
    cfg = Config.fromfile(DEMO_CFG).model.backbone
    cfg.init_cfg.checkpoint = checkpoint
    backbone = MODELS.build(cfg)
    backbone.init_weights()
    return backbone


def assert_loads_exactly(checkpoint):
    """Every ViT weight of the backbone comes from the checkpoint, and the
    checkpoint has nothing else."""
    weights = torch.load(checkpoint, weights_only=True)
    backbone = demo_backbone(checkpoint)
    own = backbone.state_dict()
    vit_keys = {k for k in own if backbone.is_pretrained_key(k)}
    assert set(weights) == vit_keys
    for key, tensor in weights.items():
        assert torch.equal(own[key], tensor), key


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    """A handful of pretraining steps: (mmseg checkpoint, its output)."""
    out = tmp_path_factory.mktemp('pretrain') / 'vit_tiny_demo_mmseg.pth'
    output = pretrain_tiny_vit(out, '--steps', '3', '--batch', '8')
    return str(out), output


def test_pretraining_writes_timm_and_converted_checkpoints(pretrained):
    checkpoint, output = pretrained
    timm_path = checkpoint.replace('_mmseg', '_timm')
    timm = torch.load(timm_path, weights_only=True)
    assert timm['blocks.3.attn.qkv.weight'].shape == (3 * 64, 64)
    assert timm['head.weight'].shape == (24, 64)  # 6 textures x 4 bands
    assert 'held-out accuracy' in output
    assert_loads_exactly(checkpoint)
    converted = torch.load(checkpoint, weights_only=True)
    assert torch.equal(converted['layers.3.attn.attn.in_proj_weight'],
                       timm['blocks.3.attn.qkv.weight'])


def test_pretraining_is_bit_exact(pretrained, tmp_path):
    """The same command writes the same bytes (the shipped file's claim)."""
    checkpoint, _ = pretrained
    again = tmp_path / 'vit_tiny_demo_mmseg.pth'
    pretrain_tiny_vit(again, '--steps', '3', '--batch', '8')

    def digest(path):
        with open(path, 'rb') as file:
            return hashlib.sha256(file.read()).hexdigest()

    assert digest(again) == digest(checkpoint)


def test_demo_config_loads_the_shipped_pretrained_vit():
    assert_loads_exactly(SHIPPED)


def read_rows(out):
    with open(osp.join(out, 'comparison.csv')) as file:
        return list(csv.DictReader(file))


FAILING_DAVPT = (  # more proxies than its two prompts
    'model = dict(backbone=dict(addons=dict(guidance=dict(num_guided=5))))')


def namesake_configs(folder, methods, failing=()):
    """A --config whose method namesakes inherit the demo's; those of
    ``failing`` made to fail (DA-VPT only: FAILING_DAVPT)."""
    compare = load_tool('analysis/compare_methods.py')
    for method in methods:
        base = compare.method_config(DEMO_CFG, method)
        path = folder / osp.relpath(base, osp.join(REPO, 'configs'))
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = FAILING_DAVPT if method in failing else ''
        path.write_text(f'_base_ = [{base!r}]\n{extra}\n')
    return str(folder / 'cvpt' / osp.basename(DEMO_CFG))


def compare(argv):
    """tools/analysis/compare_methods.py in this process (its runs are
    subprocesses, as always); its exit status."""
    return load_tool('analysis/compare_methods.py').main(argv)


def result_files(out, name):
    files = glob.glob(osp.join(out, 'runs', f'{name}_*', 'result.json'))
    assert len(files) == 1, files
    return files[0]


@pytest.mark.tool
@COMPARE_RUNS
def test_compare_methods_reruns_changed_settings(tmp_path, demo_root):
    out = str(tmp_path / 'compare')

    def status_of_run(iters):
        assert compare([
            '--methods', 'cvpt', '--prompts', '2', '--iters', str(iters),
            '--no-aug-test', '--out', out, '--cfg-options',
            *data_options(demo_root)]) == 0
        return read_rows(out)[0]['status']

    assert [status_of_run(1), status_of_run(2), status_of_run(2)] == [
        'trained', 'trained', 'skipped (done before)']
    folders = glob.glob(osp.join(out, 'runs', 'cvpt_P2_seed0_*'))
    iters = []
    for folder in folders:
        with open(osp.join(folder, 'settings.json')) as file:
            iters += [o for o in json.load(file)['cfg_options']
                      if o.startswith('train_cfg.max_iters=')]
    assert sorted(iters) == ['train_cfg.max_iters=1', 'train_cfg.max_iters=2']


def test_compare_methods_refuses_a_bad_out(tmp_path, capsys):
    a_file = tmp_path / 'comparison.md'
    a_file.write_text('not a folder')
    for out, message in ((a_file, 'is a file, not a folder'),
                         (a_file / 'sub', 'cannot be created')):
        with pytest.raises(SystemExit) as error:
            compare(['--out', str(out)])
        printed = capsys.readouterr().err
        assert error.value.code == 2, printed[-3000:]
        assert f'error: --out {out}: {message}' in printed
        assert 'Traceback' not in printed


def test_compare_methods_refuses_iters_past_the_schedule(tmp_path, capsys):
    """--iters longer than the demo's schedule (PolyLR to 0 at iteration
    300) would train its last iterations at learning rate 0: refused, with
    the fix; accepted up to the end and with the schedule lengthened."""
    tool_module = load_tool('analysis/compare_methods.py')
    out = ['--out', str(tmp_path / 'compare'), '--methods', 'cvpt']
    with pytest.raises(SystemExit) as error:
        tool_module.parse_args(out + ['--iters', '301'])
    assert error.value.code == 2
    message = capsys.readouterr().err
    assert 'schedule (param_scheduler) ends at iteration 300' in message
    assert 'the last 1 iterations would train at its final' in message
    assert 'param_scheduler.1.end=N' in message
    for argv in (['--iters', '300'],
                 ['--iters', '600', '--cfg-options',
                  'param_scheduler.1.end=600']):
        assert tool_module.parse_args(out + argv).iters == int(argv[1])


ALL_METHODS = [method.name for method in BUILT_IN]  # the registry's


def trainable_in(config, **options):
    """The trainable parameters of the model a config builds."""
    model = build_model(load_config(config, options or None))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.tool
@COMPARE_RUNS
def test_compare_methods_runs_every_method_once_per_setting(
        tmp_path, demo_root):
    """All eleven methods on the demo, two iterations: one row per run (the
    methods without prompts once, not once per P), each trained through
    tools/train.py and evaluated with tools/test.py --aug-test; the
    trainable counts are the models' own; the reports. Run again with
    DA-VPT's config changed to fail: the finished runs are skipped, the
    failure is a row, not a crash."""
    out = str(tmp_path / 'compare')
    configs = tmp_path / 'configs'
    args = [
        '--methods', *ALL_METHODS, '--prompts', '2', '--iters', '2',
        '--jobs', '2', '--out', out, '--config',
        namesake_configs(configs, ALL_METHODS), '--cfg-options',
        *data_options(demo_root)]
    assert compare(args) == 0
    rows = read_rows(out)
    labels = ['head-only', 'Bias', 'VPT-deep', 'VPT+Bias', 'CVPT', 'BPT',
              'DA-VPT', 'LoRA', 'AdaptFormer', 'Rein', 'full fine-tuning']
    with_prompts = {'VPT-deep', 'VPT+Bias', 'CVPT', 'BPT', 'DA-VPT'}
    assert [(r['method'], r['prompts']) for r in rows] == [
        (label, '2' if label in with_prompts else '0') for label in labels]
    assert all(r['status'] == 'trained' for r in rows), rows
    for row in rows:  # what the runs logged, the runs' folders by checkpoint
        run_dir = osp.dirname(osp.dirname(row['checkpoint']))
        assert float(row['accuracy']) == pytest.approx(
            validation_metric(osp.join(run_dir, 'train')), abs=0.01)
        assert float(row['accuracy_ms']) == pytest.approx(
            saved_miou(osp.join(run_dir, 'test_aug')), abs=0.01)
        assert float(row['train_s_per_iter']) > 0
        assert float(row['peak_mib']) > 0
        assert float(row['checkpoint_kib']) > 0
    with open(osp.join(out, 'comparison.md')) as file:
        table = file.read()
    for label in labels:
        prompts = 2 if label in with_prompts else 0
        assert table.count(f'| {label} | {prompts} | 0 |') == 1, label
    assert osp.getsize(osp.join(out, 'comparison.png')) > 0
    tool_module = load_tool('analysis/compare_methods.py')
    styles = [tool_module.plot_style(i) for i in range(len(labels))]
    assert len({tuple(s['color']) for s in styles}) == len(labels)
    assert len({s['marker'] for s in styles}) == len(labels)
    trainable = {r['method']: int(r['trainable']) for r in rows}
    for method, label in zip(ALL_METHODS, labels):
        config = tool_module.method_config(DEMO_CFG, method)
        options = {'model.backbone.num_prompts': 2} if label in \
            with_prompts else {}
        assert trainable[label] == trainable_in(config, **options), label
    heads = trainable['head-only']
    assert trainable['LoRA'] - heads == 4 * 4 * 8 * 64  # 4 L r D
    assert trainable['full fine-tuning'] > max(
        v for k, v in trainable.items() if k != 'full fine-tuning')

    results = [result_files(out, f'{m}_P2_seed0') for m in ('vpt', 'cvpt')]
    stamps = [os.stat(path).st_mtime_ns for path in results]
    namesake_configs(configs, ['davpt'], failing=['davpt'])
    assert compare(args) == 1
    assert [os.stat(path).st_mtime_ns for path in results] == stamps
    rows = read_rows(out)
    assert [r['status'] for r in rows] == [
        'failed' if label == 'DA-VPT' else 'skipped (done before)'
        for label in labels]
    assert 'train.py exited' in rows[labels.index('DA-VPT')]['error']
    with open(osp.join(out, 'comparison.md')) as file:
        assert '| DA-VPT | 2 | 0 | FAILED: ' in file.read()


def tiny_classification_configs(folder, demo_root):
    """The VTAB / FGVC configs of head-only, LoRA and CVPT on a 2-layer
    32-dim ViT and the classification demo data, two epochs: written as
    namesakes under ``folder``."""
    vit = dict(img_size=(32, 32), patch_size=8, embed_dims=32, num_layers=2,
               num_heads=2, mlp_ratio=2, init_cfg=None)
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='Resize', scale=(32, 32)), dict(type='PackInputs')]
    options = {'task': 'dtd', 'vtab_root': osp.join(demo_root, 'vtab-1k'),
               'fgvc_root': osp.join(demo_root, 'fgvc'),
               'model.head.in_channels': 32, 'train_cfg.max_epochs': 2,
               'param_scheduler.0.end': 1, 'param_scheduler.1.begin': 1,
               'param_scheduler.1.end': 2}
    options.update({f'model.backbone.vit.{k}': v for k, v in vit.items()})
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options.update({f'{loader}.batch_size': 8,
                        f'{loader}.num_workers': 0,
                        f'{loader}.persistent_workers': False,
                        f'{loader}.dataset.pipeline': pipeline})
    for method in ('baseline', 'lora', 'cvpt'):
        cfg = load_config(osp.join(REPO, 'configs', method,
                                   'vitb_vtab_fgvc.py'), options)
        (folder / method).mkdir(parents=True)
        cfg.dump(str(folder / method / 'vitb_vtab_fgvc.py'))
    return str(folder / 'cvpt' / 'vitb_vtab_fgvc.py')


@pytest.fixture(scope='module')
def cls_demo_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cls_demo'))
    load_tool('misc/make_cls_demo_data.py').make_demo_data(
        root, vtab_tasks=('dtd', ), fgvc_tasks=(), num_classes=4, size=32,
        counts=dict(train=10, val=4, test=10), seed=0)
    return root


@pytest.mark.tool
@COMPARE_RUNS
def test_compare_methods_on_classification(tmp_path, cls_demo_root, capsys):
    """The classification path: head-only (configs/baseline/
    vitb_vtab_fgvc.py), LoRA and CVPT on the classification demo's dtd,
    top-1 from the validation; --iters is refused for an epoch schedule."""
    config = tiny_classification_configs(tmp_path / 'configs', cls_demo_root)
    out = str(tmp_path / 'compare')
    args = ['--config', config, '--methods', 'baseline', 'lora', 'cvpt',
            '--prompts', '2', '--out', out, '--cfg-options', 'task=dtd']
    assert compare(args) == 0
    rows = read_rows(out)
    assert [(r['method'], r['prompts'], r['metric']) for r in rows] == [
        ('head-only', '0', 'top-1'), ('LoRA', '0', 'top-1'),
        ('CVPT', '2', 'top-1')]
    for row in rows:  # the top-1 each run logged
        train_dir = osp.dirname(row['checkpoint'])
        assert float(row['accuracy']) == pytest.approx(
            validation_metric(train_dir, 'accuracy/top1'), abs=0.01)
    assert int(rows[1]['trainable']) - int(rows[0]['trainable']) == \
        4 * 2 * 8 * 32
    with pytest.raises(SystemExit) as error:
        load_tool('analysis/compare_methods.py').parse_args(
            args + ['--iters', '2'])
    assert error.value.code == 2
    assert 'trains by epoch' in capsys.readouterr().err
