"""Task packages: tuned-only runner checkpoints, loading them through every
client (restored from the base checkpoint or a loud error), the export tool,
and several tasks on one frozen backbone. Tiny ViTs, CPU, the real Runner,
mmseg's and mmpretrain's own APIs."""
import argparse
import copy
import glob
import json
import os
import os.path as osp
import re
import shutil
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from mmengine.config import DictAction
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.checkpoint import _load_checkpoint

from mmseg_cvpt.apis import (MultiTaskModel, build_model, export_task,
                             model_meta)
from mmseg_cvpt.apis.task_package import save_file
from mmseg_cvpt.engine import (CheckpointFileError, find_resume_checkpoint,
                               load_config)
from mmseg_cvpt.engine.cli import run_as_command
from mmseg_cvpt.engine.config_data import config_from_data
from mmseg_cvpt.models import backbone_of, tuned_state_dict
from mmseg_cvpt.models.backbones import FrozenBaseError
from test_classification import CONFIGS as CLS_CONFIGS
from test_classification import tiny_options
from test_reliability import log_lines
from test_segmentation_workflow import tiny_vit
from tiny_runs import (DEMO_CFG, REPO, VPT_CFG, as_main, data_options, run,
                       run_cli_in_process, run_in_process,
                       run_in_process_unchecked, write_config)
from tool_loading import load_tool

pytestmark = pytest.mark.filterwarnings('ignore:pkg_resources is deprecated')

MMSEG_TEST = osp.join(
    osp.dirname(__import__('mmseg').__file__), '.mim', 'tools', 'test.py')
SEG_IMAGE = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
CLS_TASKS = ('dtd', 'cub', 'svhn')  # 47 / 200 / 10 classes, P = 10 / 5 / 5


def as_options(strings):
    """``--cfg-options`` strings -> the dict ``load_config`` takes."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--o', nargs='+', action=DictAction)
    return parser.parse_args(['--o', *strings]).o


def save_base(cfg, path, seed):
    """A base checkpoint: the frozen ViT of the config's model with random
    weights drawn with ``seed``, as a plain mmseg-layout state dict."""
    torch.manual_seed(seed)
    weights = backbone_of(build_model(cfg))[0].frozen_state_dict()
    for tensor in weights.values():
        tensor.add_(torch.randn_like(tensor) * 0.02)
    torch.save(weights, path)
    return str(path)


def tuned_keys(model):
    """What a tuned-only state dict of ``model`` holds: trainable
    parameters, persistent buffers (heads' BN, method buffers), the record."""
    persistent = set(model.state_dict())
    return ({n for n, p in model.named_parameters() if p.requires_grad}
            | {n for n, _ in model.named_buffers() if n in persistent}
            | {'backbone._extra_state'})


def state_of(path):
    return torch.load(path)['state_dict']


def assert_same_state(got, expected):
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


@contextmanager
def base_moved(path):
    """The base checkpoint gone from ``path``; yields where it went."""
    away = path + '.away'
    shutil.move(path, away)
    try:
        yield away
    finally:
        shutil.move(away, path)


@contextmanager
def base_replaced(path, cfg):
    """Other weights of the same ViT at ``path``."""
    with base_moved(path):
        save_base(cfg, path, seed=99)
        try:
            yield
        finally:
            os.remove(path)


# ---- segmentation: a tuned-only training run ------------------------------
@pytest.fixture(scope='module')
def seg_base(tmp_path_factory):
    return save_base(load_config(DEMO_CFG),
                     tmp_path_factory.mktemp('base') / 'vit_tiny.pth', seed=1)


def train_demo(root, work_dir, max_iters, base, resume=False,
               config=DEMO_CFG):
    """The demo config (or ``config``) with ``base`` as its pretrained ViT
    (None: random frozen weights), through the Runner; checkpoints every 2
    iterations. ``resume``: True (the work dir's ``last_checkpoint``) or a
    path."""
    cfg = load_config(
        config,
        as_options(data_options(root) + [
            f'train_cfg.max_iters={max_iters}', 'train_cfg.val_interval=100',
            'default_hooks.checkpoint.interval=2', 'log_level=WARNING'
        ]), str(work_dir))
    cfg.model.backbone.init_cfg = base and dict(
        type='Pretrained', checkpoint=base)
    cfg.resume = bool(resume)
    cfg.load_from = resume if isinstance(resume, str) else None
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


@pytest.fixture(scope='module')
def seg_run(demo_root, seg_base, tmp_path_factory):
    """4 iterations from the base; the final model saved in full as the
    reference (``full.pth``), its config as ``config.py``."""
    work_dir = tmp_path_factory.mktemp('seg_run')
    runner = train_demo(demo_root, work_dir, 4, seg_base)
    torch.save(
        dict(meta=dict(model_meta(runner.cfg, runner.model),
                       dataset_meta=runner.train_dataloader.dataset.metainfo),
             state_dict=runner.model.state_dict()), work_dir / 'full.pth')
    runner.cfg.dump(str(work_dir / 'config.py'))
    return dict(work_dir=work_dir, cfg=runner.cfg,
                tuned=str(work_dir / 'iter_4.pth'),
                full=str(work_dir / 'full.pth'),
                config=str(work_dir / 'config.py'))


def test_runner_checkpoint_holds_only_tuned_tensors(seg_run, seg_base):
    checkpoint = torch.load(seg_run['tuned'])
    model = build_model(seg_run['cfg'])
    backbone, _ = backbone_of(model)
    state = checkpoint['state_dict']
    assert set(state) == tuned_keys(model)
    assert 'backbone.prompts.tokens' in state
    assert not any(f'backbone.{k}' in state for k in backbone.frozen_keys())
    meta = checkpoint['meta']['frozen_base']
    assert meta['checkpoint'] == seg_base and meta['tuned_only']
    full = state_of(seg_run['full'])
    assert_same_state(state, tuned_state_dict(model, full))
    model.load_state_dict(full)
    assert meta['fingerprint'] == backbone.frozen_fingerprint()
    for part in ('optimizer', 'param_schedulers', 'message_hub', 'rng_state'):
        assert part in checkpoint, part
    assert len(checkpoint['optimizer']['state']) == sum(
        p.requires_grad for p in model.parameters())


def test_resume_from_tuned_only_is_exact(seg_run, demo_root, seg_base,
                                         tmp_path):
    """2 iterations, then --resume to 4 with random frozen weights at start
    (no init_cfg): the frozen ViT comes back from the recorded base, and
    the run ends bit for bit where the uninterrupted one did."""
    train_demo(demo_root, tmp_path, 2, seg_base)
    assert 'backbone.layers.0.ln1.weight' not in state_of(
        tmp_path / 'iter_2.pth')
    train_demo(demo_root, tmp_path, 4, None, resume=True)
    assert_same_state(
        state_of(tmp_path / 'iter_4.pth'), state_of(seg_run['tuned']))


@pytest.mark.parametrize('config', [
    osp.join(REPO, 'configs', 'bpt', 'upernet_vittiny_ade20k_demo.py'),
    osp.join(REPO, 'configs', 'davpt', 'upernet_vittiny_ade20k_demo.py')
])
def test_tuned_state_keeps_method_buffers(config):
    model = build_model(load_config(config))
    tuned = tuned_state_dict(model)
    assert set(tuned) == tuned_keys(model)
    assert set(tuned) & {'backbone.prompts.calibrated',
                         'backbone.guidance.class_to_proxy'}
    backbone, _ = backbone_of(model)
    assert backbone.frozen_keys()
    assert not set(tuned) & {f'backbone.{k}' for k in backbone.frozen_keys()}


# ---- every client restores the frozen ViT, or says what is missing -------
def seg_client(name, cfg, checkpoint):
    """The model that client ``name`` loads ``checkpoint`` into."""
    if name == 'load_checkpoint':
        model = build_model(cfg)
        load_checkpoint(model, checkpoint, map_location='cpu')
    elif name == 'load_state_dict':
        model = build_model(cfg)
        model.load_state_dict(state_of(checkpoint))
    elif name == 'runner':
        cfg = copy.deepcopy(cfg)
        cfg.update(work_dir=osp.dirname(checkpoint), load_from=checkpoint,
                   resume=False)
        runner = Runner.from_cfg(cfg)
        runner.load_or_resume()  # what runner.test() starts with
        model = runner.model
    elif name == 'init_model':
        from mmseg.apis import init_model
        model = init_model(copy.deepcopy(cfg), checkpoint, device='cpu')
    else:  # the inferencer, with the config or with the checkpoint's
        from mmseg.apis import MMSegInferencer
        model = MMSegInferencer(
            copy.deepcopy(cfg) if name == 'inferencer' else None, checkpoint,
            device='cpu').model
    model.cfg = cfg
    return model.eval()


SEG_CLIENTS = ('load_checkpoint', 'load_state_dict', 'runner', 'init_model',
               'inferencer', 'inferencer_without_config')


@pytest.mark.parametrize('client', SEG_CLIENTS)
def test_seg_clients_reproduce_the_full_model(seg_run, client):
    from mmseg.apis import inference_model
    reference = seg_client('load_checkpoint', seg_run['cfg'], seg_run['full'])
    model = seg_client(client, seg_run['cfg'], seg_run['tuned'])
    assert_same_state(model.state_dict(), reference.state_dict())
    got = inference_model(model, SEG_IMAGE).seg_logits.data
    expected = inference_model(reference, SEG_IMAGE).seg_logits.data
    assert (got - expected).abs().max() == 0


@pytest.mark.parametrize('client', SEG_CLIENTS)
def test_seg_clients_fail_without_the_base(seg_run, seg_base, client):
    with base_moved(seg_base), pytest.raises(
            FrozenBaseError, match=f'{seg_base}: not found'):
        seg_client(client, seg_run['cfg'], seg_run['tuned'])
    with base_replaced(seg_base, seg_run['cfg']), pytest.raises(
            FrozenBaseError, match=f'{seg_base}: fingerprint .* differs'):
        seg_client(client, seg_run['cfg'], seg_run['tuned'])


def test_seg_base_found_by_given_path(seg_run, seg_base):
    cfg = copy.deepcopy(seg_run['cfg'])
    with base_moved(seg_base) as away:
        cfg.model.backbone.base_checkpoint = away
        model = seg_client('init_model', cfg, seg_run['tuned'])
    assert_same_state(model.state_dict(),
                      {**state_of(seg_run['full']),
                       **{'backbone._extra_state':
                          model.state_dict()['backbone._extra_state']}})
    assert backbone_of(model)[0].frozen_base['checkpoint'] == away


def predictions(folder):
    files = sorted(glob.glob(osp.join(folder, '*.png')))
    assert files
    return {osp.basename(f): open(f, 'rb').read() for f in files}


def our_test_tool(seg_run, demo_root, tmp_path, checkpoint, out, *extra):
    """Our tools/test.py on ``checkpoint``, in this process; its
    predictions (the tool's exception raised as it is)."""
    error, _ = run_in_process_unchecked('test.py', [
        seg_run['config'], checkpoint, '--work-dir', str(tmp_path), '--out',
        str(tmp_path / out), *extra, '--cfg-options', *data_options(demo_root)
    ])
    if error is not None:
        raise error
    return predictions(tmp_path / out)


@pytest.mark.tool
def test_test_tools(seg_run, seg_base, demo_root, tmp_path):
    """mmseg's own tools/test.py on the tuned-only checkpoint predicts what
    ours does on the full one (in a process of its own, which imports our
    modules only through the config's custom_imports); without the base
    mmseg's tool fails naming it (in this process: it is the loading that
    is checked), and ours takes the moved base with --base-checkpoint."""
    def test_ours(checkpoint, out, *extra):
        return our_test_tool(seg_run, demo_root, tmp_path, checkpoint, out,
                             *extra)

    expected = test_ours(seg_run['full'], 'full')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO, os.environ.get('PYTHONPATH', '')]))
    mmseg_args = [sys.executable, MMSEG_TEST, seg_run['config'],
                  seg_run['tuned'], '--work-dir', str(tmp_path)]
    run(mmseg_args + ['--out', str(tmp_path / 'mmseg'), '--cfg-options'] +
        data_options(demo_root), env=env)
    assert predictions(tmp_path / 'mmseg') == expected
    with base_moved(seg_base) as away:
        with pytest.raises(FrozenBaseError, match=f'{seg_base}: not found'):
            argv = mmseg_args[1:] + ['--cfg-options'] + data_options(
                demo_root)
            as_main('test.py', argv[1:], lambda: run_as_command(argv))
        assert test_ours(seg_run['tuned'], 'moved', '--base-checkpoint',
                         away) == expected


def test_analysis_tools_name_the_base(seg_run, seg_base, tmp_path):
    """tools/analysis/prompt_attention.py (and burstiness.py) build their
    own ViT, without the patch bias of our configs: a tuned-only checkpoint
    cannot be completed, and the error says so, naming the base."""
    tool = load_tool('analysis/prompt_attention.py')
    arch = ['--img-size', '64', '--patch-size', '8', '--embed-dims', '64',
            '--num-layers', '4', '--num-heads', '4', '--prompts', '2']
    with pytest.raises(FrozenBaseError,
                       match=f'{seg_base}: fingerprint .* another ViT arch'):
        tool.main(['--checkpoint', seg_run['tuned'], '--prefix', 'backbone.',
                   '--out', str(tmp_path), *arch])


# ---- export -----------------------------------------------------------------
def test_export_round_trip_is_exact(seg_run, tmp_path):
    package = tmp_path / 'task.pth'
    export_task(seg_run['full'], str(package))
    content = torch.load(package)
    full = state_of(seg_run['full'])
    model = build_model(seg_run['cfg'])
    assert_same_state(content['state_dict'], tuned_state_dict(model, full))
    info = content['meta']['task_package']
    assert info['version'] == 1 and not info['full']
    cfg = config_from_data(content['meta']['cfg_dict'], str(package))
    source = seg_run['cfg'].model.backbone  # its weights file not kept
    assert 'init_cfg' in source and 'init_cfg' not in cfg.model.backbone
    assert dict(cfg.model.backbone) == \
        {k: v for k, v in source.items() if k != 'init_cfg'}
    assert content['meta']['dataset_meta']['classes'][0] == 'wall'
    export_task(str(package), str(tmp_path / 'full.pth'), full=True)
    assert_same_state(state_of(tmp_path / 'full.pth'), full)
    # a package is all an inferencer needs, config included
    model = seg_client('inferencer_without_config', None, str(package))
    assert_same_state(model.state_dict(), full)
    # the tool, on the runner's tuned-only checkpoint
    tool = load_tool('export_task.py')
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, 'argv', ['export_task.py', seg_run['tuned'], '--out',
                                 str(tmp_path / 'from_runner.pth')])
        tool.main()
    assert_same_state(state_of(tmp_path / 'from_runner.pth'),
                      content['state_dict'])


def test_export_without_a_base_writes_one(tmp_path):
    """A model with random frozen weights (the demo without its pretrained
    ViT) has no base: exporting it needs --base-checkpoint, where the
    frozen weights are then written."""
    random_vit = write_config(
        tmp_path / 'random_vit.py', f"""
        _base_ = [{DEMO_CFG!r}]
        model = dict(backbone=dict(init_cfg=None))
        """)
    cfg = load_config(random_vit)
    model = build_model(cfg)
    model.init_weights()
    full = str(tmp_path / 'full.pth')
    torch.save(model.state_dict(), full)
    with pytest.raises(ValueError, match='pass --base-checkpoint PATH'):
        export_task(full, str(tmp_path / 'task.pth'), config=random_vit)
    base = str(tmp_path / 'base.pth')
    export_task(full, str(tmp_path / 'task.pth'), random_vit,
                base_checkpoint=base)
    assert osp.isfile(base)
    loaded = build_model(cfg)
    load_checkpoint(loaded, str(tmp_path / 'task.pth'))
    expected = model.state_dict()
    expected['backbone._extra_state'] = \
        loaded.state_dict()['backbone._extra_state']
    assert_same_state(loaded.state_dict(), expected)


# ---- integrity of every load; safetensors packages --------------------------
HEAD_KEY = 'decode_head.conv_seg.weight'


def flip_bytes(path, tensor, out):
    """A copy of ``path`` at ``out`` with 256 bytes of ``tensor``'s data
    flipped: the zip (or safetensors header) still opens."""
    data = bytearray(open(path, 'rb').read())
    start = data.find(tensor.numpy().tobytes())
    assert start > 0
    data[start:start + 256] = bytes(b ^ 0xFF for b in data[start:start + 256])
    open(out, 'wb').write(bytes(data))
    return out


@pytest.fixture(scope='module')
def packages(seg_run, tmp_path_factory):
    """The run's task package as ``.pth`` and ``.safetensors``, and a copy
    of each with 256 bytes of the head's weights flipped."""
    root = tmp_path_factory.mktemp('packages')
    head = state_of(seg_run['full'])[HEAD_KEY]
    made = {}
    for suffix in ('.pth', '.safetensors'):
        made[suffix] = str(root / f'task{suffix}')
        export_task(seg_run['full'], made[suffix])
        made['damaged' + suffix] = flip_bytes(made[suffix], head,
                                              str(root / f'damaged{suffix}'))
    return made


DAMAGE = {'.pth': r'1 zip entries fail their CRC-32 check: \S+/data/\d+ '
          rf'\(state_dict/{HEAD_KEY}\)',
          '.safetensors': rf'1 tensors differ from the CRC-32 .*: {HEAD_KEY}'}


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
@pytest.mark.parametrize('client', ['tools/test.py', 'export_task',
                                    'MultiTaskModel', 'load_checkpoint',
                                    'init_model'])
def test_damaged_package_is_refused(seg_run, packages, demo_root, tmp_path,
                                    client, suffix):
    damaged = packages['damaged' + suffix]
    with pytest.raises(CheckpointFileError,
                       match=f'{damaged} is damaged: {DAMAGE[suffix]}'):
        if client == 'tools/test.py':
            our_test_tool(seg_run, demo_root, tmp_path, damaged, 'out')
        elif client == 'export_task':
            export_task(damaged, str(tmp_path / 'out.pth'))
        elif client == 'MultiTaskModel':
            MultiTaskModel(dict(task=damaged))
        else:
            seg_client(client, seg_run['cfg'], damaged)


def test_resume_passes_over_a_damaged_checkpoint(seg_run, demo_root,
                                                 seg_base, tmp_path):
    """iter_4.pth of a run damaged: mmengine's resume from it is an error
    naming the entry; find_resume_checkpoint (tools/train.py --resume)
    warns and takes iter_2.pth, and the run ends where the intact one did."""
    work_dir = tmp_path / 'work'
    shutil.copytree(seg_run['work_dir'], work_dir)
    newest = str(work_dir / 'iter_4.pth')
    (work_dir / 'last_checkpoint').write_text(newest)
    prompts = state_of(newest)['backbone.prompts.tokens']
    flip_bytes(newest, prompts, newest)
    with pytest.raises(CheckpointFileError, match=rf'{newest} is damaged: 1 '
                       r'zip entries .*\(state_dict/backbone.prompts.tokens'):
        train_demo(demo_root, work_dir, 4, seg_base, resume=True)
    logged = log_lines(find_resume_checkpoint, str(work_dir))
    assert any(f'names {newest}, which is missing, truncated or damaged: '
               f'resuming from the newest intact checkpoint, '
               f'{work_dir / "iter_2.pth"}' in line for line in logged)
    train_demo(demo_root, work_dir, 4, seg_base,
               resume=find_resume_checkpoint(str(work_dir)))
    assert_same_state(state_of(newest), state_of(seg_run['tuned']))


def as_json(obj):
    return json.loads(json.dumps(obj))


@pytest.mark.parametrize('client', [c for c in SEG_CLIENTS
                                    if c != 'load_state_dict'])
def test_safetensors_package_equals_the_pth_one(seg_run, packages, client):
    """The same model, class names (the package's meta) and predictions.
    (torch 2.14's own torch.load reads a .safetensors path as a plain state
    dict, without meta and unchecked.)"""
    from mmseg.apis import inference_model
    reference = seg_client(client, seg_run['cfg'], packages['.pth'])
    model = seg_client(client, seg_run['cfg'], packages['.safetensors'])
    assert_same_state(model.state_dict(), reference.state_dict())
    assert as_json(getattr(model, 'dataset_meta', None)) == as_json(
        getattr(reference, 'dataset_meta', None))
    got = inference_model(model, SEG_IMAGE).seg_logits.data
    expected = inference_model(reference, SEG_IMAGE).seg_logits.data
    assert (got - expected).abs().max() == 0


def test_safetensors_package_in_our_tools(seg_run, packages, demo_root,
                                          tmp_path):
    """No pickle in the file: tensors plus meta as JSON in the header;
    tools/test.py, MultiTaskModel and export_task (back to .pth, and
    --full to .safetensors) give what the .pth package gives."""
    from safetensors import safe_open
    with safe_open(packages['.safetensors'], 'pt') as file:
        header = json.loads(file.metadata()['mmseg_cvpt.meta'])
    pth = torch.load(packages['.pth'])
    assert header == as_json(pth['meta'])
    assert our_test_tool(seg_run, demo_root, tmp_path,
                         packages['.safetensors'], 'st') == our_test_tool(
                             seg_run, demo_root, tmp_path, packages['.pth'],
                             'pth')
    data = dict(inputs=list(
        torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)))
    got, expected = (MultiTaskModel(dict(task=packages[suffix])).predict(data)
                     for suffix in ('.safetensors', '.pth'))
    for a, b in zip(got, expected):
        assert torch.equal(a.seg_logits.data, b.seg_logits.data)
    export_task(packages['.safetensors'], str(tmp_path / 'task.pth'))
    assert_same_state(state_of(tmp_path / 'task.pth'), pth['state_dict'])
    full = str(tmp_path / 'full.safetensors')
    export_task(packages['.safetensors'], full, full=True)
    assert_same_state(_load_checkpoint(full)['state_dict'],
                      state_of(seg_run['full']))


def test_checkpoint_files_name_their_problem(tmp_path):
    """A truncated zip is named; a meta that JSON cannot hold is refused
    for safetensors; the legacy torch format loads as before."""
    checkpoint = dict(meta=dict(step=1), state_dict=dict(w=torch.ones(3)))
    torch.save(checkpoint, tmp_path / 'whole.pth')
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes((tmp_path / 'whole.pth').read_bytes()[:200])
    with pytest.raises(CheckpointFileError, match=f'{truncated} is truncated'):
        _load_checkpoint(str(truncated))
    with pytest.raises(ValueError, match='meta is not JSON .*write a .pth'):
        save_file(dict(checkpoint, meta=dict(step={1, 2})),
                  str(tmp_path / 'set.safetensors'))
    torch.save(checkpoint, tmp_path / 'legacy.pth',
               _use_new_zipfile_serialization=False)
    assert _load_checkpoint(str(tmp_path / 'legacy.pth'))['meta'] == \
        checkpoint['meta']


# ---- classification ---------------------------------------------------------
def cls_config(method, task, base):
    options = dict(tiny_options('unused'), task=task)
    options['model.backbone.vit.init_cfg'] = dict(type='Pretrained',
                                                  checkpoint=base)
    return load_config(CLS_CONFIGS[method], options)


def make_task(cfg, folder, name, seed, tune=None):
    """A model of ``cfg`` loaded from its base, prompts and heads drawn with
    ``seed`` (then changed by ``tune(model)`` if given): its full checkpoint
    and its task package."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    model.init_weights()
    if tune:
        tune(model)
    full, package = (str(folder / f'{name}_{kind}.pth')
                     for kind in ('full', 'task'))
    torch.save(dict(meta=model_meta(cfg, model),
                    state_dict=model.state_dict()), full)
    export_task(full, package)
    return dict(cfg=cfg, full=full, package=package)


@pytest.fixture(scope='module')
def cls_packages(tmp_path_factory):
    """For CVPT and VPT: a base and, per task, a full checkpoint of a
    randomly tuned classifier and its task package."""
    root = tmp_path_factory.mktemp('cls')
    base = save_base(cls_config('cvpt', 'dtd', None), root / 'base.pth', 2)
    made = dict(base=base)
    for method in ('cvpt', 'vpt'):
        for seed, task in enumerate(CLS_TASKS):
            made[method, task] = make_task(cls_config(method, task, base),
                                           root, f'{method}_{task}', seed)
    return made


def cls_client(name, cfg, checkpoint):
    from mmpretrain.apis import ImageClassificationInferencer, get_model
    init_default_scope('mmpretrain')  # as a script of mmpretrain's runs
    if name == 'get_model':
        return get_model(copy.deepcopy(cfg), checkpoint, device='cpu')
    return ImageClassificationInferencer(copy.deepcopy(cfg), checkpoint,
                                         device='cpu').model


@pytest.mark.parametrize('client', ['get_model', 'inferencer'])
def test_cls_clients(cls_packages, client):
    made = cls_packages['cvpt', 'dtd']
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    reference = cls_client(client, made['cfg'], made['full'])
    model = cls_client(client, made['cfg'], made['package'])
    assert_same_state(model.state_dict(), reference.state_dict())
    got = model.test_step(dict(inputs=images))
    expected = reference.test_step(dict(inputs=images))
    for a, b in zip(got, expected):
        assert (a.pred_score - b.pred_score).abs().max() == 0
    base = cls_packages['base']
    with base_moved(base), pytest.raises(FrozenBaseError,
                                         match=f'{base}: not found'):
        cls_client(client, made['cfg'], made['package'])
    with base_replaced(base, made['cfg']), pytest.raises(
            FrozenBaseError, match=f'{base}: fingerprint'):
        cls_client(client, made['cfg'], made['package'])


# ---- several tasks on one frozen backbone -----------------------------------
def alone(made, data, index):
    """Image ``index`` through the task's own full model, alone."""
    model = build_model(made['cfg'])
    load_checkpoint(model, made['full'])
    model.eval()
    with torch.no_grad():
        return model.test_step(
            {k: [v[index]] for k, v in data.items()})[0]


def shared_bytes(models):
    """Bytes of the distinct tensors of the models' state dicts."""
    storages = {}
    for model in models:
        for key, tensor in model.state_dict(keep_vars=True).items():
            if not key.endswith('_extra_state'):
                storages[tensor.data_ptr()] = \
                    tensor.numel() * tensor.element_size()
    return sum(storages.values())


def package_bytes(path):
    return sum(t.numel() * t.element_size()
               for k, t in state_of(path).items()
               if not k.endswith('_extra_state'))


def check_multi_task(made, data, names, output):
    tasks = MultiTaskModel({name: made[name]['package'] for name in made})
    got = tasks.predict(data, tasks=names)
    for index, (name, result) in enumerate(zip(names, got)):
        expected = alone(made[name], data, index)
        assert (output(result) - output(expected)).abs().max() < 1e-5
    backbone, _ = backbone_of(tasks.tasks[names[0]])
    frozen = sum(t.numel() * t.element_size()
                 for t in backbone.frozen_state_dict().values())
    assert shared_bytes(tasks.tasks.values()) == frozen + sum(
        package_bytes(m['package']) for m in made.values())
    last = names[-1]
    tasks.switch(last)
    result = tasks.predict(data)[0]
    assert (output(result) - output(alone(made[last], data, 0))).abs().max() \
        < 1e-5
    return tasks


@pytest.mark.parametrize('method', ['cvpt', 'vpt'])
def test_multi_task_classification(cls_packages, method):
    made = {task: cls_packages[method, task] for task in CLS_TASKS}
    data = dict(inputs=list(
        torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)))
    names = ['cub', 'dtd', 'svhn', 'dtd', 'cub']
    tasks = check_multi_task(made, data, names, lambda r: r.pred_score)
    assert [len(r.pred_score) for r in tasks.predict(data, names)] == \
        [200, 47, 10, 47, 200]


@pytest.fixture(scope='module')
def seg_packages(seg_base, tmp_path_factory):
    """Per method, three segmentation tasks tuned on the same base."""
    root = tmp_path_factory.mktemp('seg_tasks')
    vpt_cfg = write_config(root / 'vpt_tiny.py',
                           f'_base_ = [{VPT_CFG!r}]\n' +
                           tiny_vit(num_prompts=8))
    made = {}
    for method, config in (('cvpt', DEMO_CFG), ('vpt', vpt_cfg)):
        cfg = load_config(config)
        cfg.model.backbone.init_cfg = dict(type='Pretrained',
                                           checkpoint=seg_base)
        for seed, task in enumerate(('a', 'b', 'c')):
            made[method, task] = make_task(cfg, root, f'{method}_{task}',
                                           seed)
    return made


@pytest.mark.parametrize('method', ['cvpt', 'vpt'])
def test_multi_task_segmentation(seg_packages, method):
    made = {task: seg_packages[method, task] for task in 'abc'}
    data = dict(inputs=list(
        torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)))
    check_multi_task(made, data, ['c', 'a', 'b', 'a'],
                     lambda r: r.seg_logits.data)


def test_multi_task_rejects_other_bases(cls_packages, tmp_path):
    tasks = MultiTaskModel(dict(dtd=cls_packages['cvpt', 'dtd']['package']))
    other = save_base(cls_packages['cvpt', 'dtd']['cfg'],
                      tmp_path / 'other.pth', seed=5)
    made = make_task(cls_config('cvpt', 'cub', other), tmp_path, 'cub', 0)
    with pytest.raises(ValueError, match='is not a task package'):
        tasks.add_task('cub', made['full'])
    with pytest.raises(ValueError, match='tuned on other frozen weights'):
        tasks.add_task('cub', made['package'])
    with pytest.raises(KeyError, match='unknown tasks'):
        tasks.switch('cub')
    assert list(tasks.tasks) == ['dtd']


def test_footprint_tool(cls_packages, tmp_path, capsys):
    tool = load_tool('analysis/task_footprint.py')
    tool.main(['sizes', DEMO_CFG, '--work-dir', str(tmp_path)])
    out = capsys.readouterr().out
    sizes = {kind: osp.getsize(tmp_path / f'{kind}.pth')
             for kind in ('full', 'tuned_only', 'task_package',
                          'full_export')}
    for kind, size in sizes.items():
        assert f'{kind} ' in out and f'{size:,} bytes' in out
    assert sizes['task_package'] < sizes['tuned_only'] < sizes['full']
    assert sizes['task_package'] < sizes['full_export'] < sizes['full']
    packages = [cls_packages['vpt', task]['package'] for task in CLS_TASKS]
    run = tool.measure('shared', packages)
    assert run['tasks'] == 3 and run['peak_kib'] >= run['after_kib'] > 0


# ---- configs are data; checkpoints of another method ------------------------
def rewritten(path, out, change):
    """A copy of the checkpoint at ``path`` at ``out``, ``change(content)``
    applied first."""
    content = torch.load(path)
    change(content)
    torch.save(content, out)
    return str(out)


def marker_command(marker):
    """Python that creates ``marker`` when run."""
    return f"\n__import__('pathlib').Path({str(marker)!r}).touch()\n"


def poison_data(key, value):
    """A change of a checkpoint: its config data's ``key`` set to
    ``value`` (key ``a.b``: ``cfg['a']['b']``)."""

    def change(content):
        cfg_dict = json.loads(content['meta']['cfg_dict'])
        *parents, last = key.split('.')
        target = cfg_dict
        for parent in parents:
            target = target[parent]
        target[last] = value
        content['meta']['cfg_dict'] = json.dumps(cfg_dict)

    return change


def test_config_text_is_never_run(seg_run, demo_root, seg_base, tmp_path):
    """A package or runner checkpoint whose config would run a command:
    export_task, MultiTaskModel, tools/test.py and --resume read the config
    as data or not at all; types that only an import would find (the
    registries import dotted names) are refused."""
    marker = tmp_path / 'ran'
    package = str(tmp_path / 'task.pth')
    export_task(seg_run['tuned'], package)  # the runner's config data
    text = rewritten(package, tmp_path / 'text.pth', lambda c: c['meta'].
                     update(cfg=c['meta']['cfg'] + marker_command(marker)))
    export_task(text, str(tmp_path / 'again.pth'))
    MultiTaskModel(dict(task=text))
    text_only = rewritten(text, tmp_path / 'text_only.pth',
                          lambda c: c['meta'].pop('cfg_dict'))
    message = 'holds its config only as Python text, which is not ' \
        'executed: pass --config CONFIG'
    with pytest.raises(ValueError, match=message):
        export_task(text_only, str(tmp_path / 'none.pth'))
    with pytest.raises(ValueError, match=message):
        MultiTaskModel(dict(task=text_only))
    MultiTaskModel().add_task('task', text_only, config=seg_run['config'])
    command = f'touch {marker}'
    for key, value in (('model.backbone', dict(type='os.system',
                                               command=command)),
                       ('model.backbone._scope_', 'antigravity')):
        data = rewritten(package, tmp_path / 'data.pth',
                         poison_data(key, value))
        with pytest.raises(ValueError, match='which no registry holds'):
            export_task(data, str(tmp_path / 'none.pth'))
        with pytest.raises(ValueError, match='which no registry holds'):
            MultiTaskModel(dict(task=data))
    run_in_process('test.py', [
        seg_run['config'], text_only, '--work-dir', str(tmp_path / 'test'),
        '--cfg-options'
    ] + data_options(demo_root))
    # mmengine's resume runs meta['config'] (mmcv 1.x's name) as Python
    work_dir = tmp_path / 'resume'
    train_demo(demo_root, work_dir, 2, seg_base)
    rewritten(work_dir / 'iter_2.pth', work_dir / 'iter_2.pth',
              lambda c: c['meta'].update(config=marker_command(marker)))
    train_demo(demo_root, work_dir, 4, None, resume=True)
    assert not marker.exists()


@pytest.fixture(scope='module')
def vpt_run(demo_root, seg_base, tmp_path_factory):
    """2 iterations of the VPT demo (the tensors of the CVPT demo's shapes)
    and its task package."""
    work_dir = tmp_path_factory.mktemp('vpt_run')
    train_demo(demo_root, work_dir, 2, seg_base,
               config=osp.join(REPO, 'configs', 'vpt',
                               'upernet_vittiny_ade20k_demo.py'))
    export_task(str(work_dir / 'iter_2.pth'), str(work_dir / 'task.pth'))
    return dict(work_dir=work_dir, checkpoint=str(work_dir / 'iter_2.pth'),
                package=str(work_dir / 'task.pth'))


def test_checkpoint_of_another_method_is_refused(vpt_run, seg_run, demo_root,
                                                 tmp_path):
    """The VPT demo's checkpoint and package with the CVPT demo config: an
    error naming both models in tools/test.py, load_from, --resume,
    MultiTaskModel and export_task, not a meaningless mIoU."""
    both = r"is a VPTViT \(vit='MMSegViT', num_prompts=8, prompt_depth=4, " \
        r"prompts='LayerPrompts', addons={}; EncoderDecoder\) model, the " \
        r"config " \
        r"builds CVPTViT \(.*ca_position=3, ca_weights='shared'; "
    for checkpoint in (vpt_run['checkpoint'], vpt_run['package']):
        status, out = run_cli_in_process('test.py', [
            seg_run['config'], checkpoint, '--work-dir',
            str(tmp_path / 'test'), '--cfg-options'
        ] + data_options(demo_root))
        assert status != 0
        assert re.search(both, out), out[-3000:]
        assert not re.search(r'mIoU: \d', out)
    with pytest.raises(RuntimeError, match=both):
        MultiTaskModel().add_task('vpt', vpt_run['package'],
                                  config=seg_run['config'])
    with pytest.raises(RuntimeError, match=both):
        export_task(vpt_run['package'], str(tmp_path / 'task.pth'),
                    config=seg_run['config'])
    cfg = load_config(seg_run['config'], work_dir=str(tmp_path / 'load'))
    cfg.load_from = vpt_run['checkpoint']
    with pytest.raises(RuntimeError, match=both):
        Runner.from_cfg(cfg).load_or_resume()
    work_dir = tmp_path / 'resume'
    shutil.copytree(vpt_run['work_dir'], work_dir)
    with pytest.raises(RuntimeError, match=both):
        train_demo(demo_root, work_dir, 4, None, resume=True)
    assert not (work_dir / 'iter_4.pth').exists()


def tune_biases(model):
    """Biases of the ViT as a bias-tuned task would have them."""
    backbone, _ = backbone_of(model)
    with torch.no_grad():
        for name, param in backbone.named_parameters():
            if param.requires_grad and 'bias' in name:
                param.add_(torch.randn_like(param))


@pytest.mark.parametrize('first', ['bias', 'plain'])
def test_multi_task_bias_tuned_and_plain_in_any_order(seg_packages, seg_base,
                                                      tmp_path, first):
    """A task tuning the ViT's biases (frozen_exclude=['bias']) and a plain
    task of the same base, added in either order: each predicts what its
    own model does alone, and only the plain task's frozen biases are
    extra."""
    cfg = load_config(DEMO_CFG)
    cfg.model.backbone.update(
        frozen_exclude=['bias'],
        init_cfg=dict(type='Pretrained', checkpoint=seg_base))
    made = dict(bias=make_task(cfg, tmp_path, 'bias', 3, tune=tune_biases),
                plain=seg_packages['cvpt', 'a'])
    if first == 'plain':
        made = dict(reversed(made.items()))
    data = dict(inputs=list(
        torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)))
    check_multi_task(made, data, ['plain', 'bias', 'plain'],
                     lambda r: r.seg_logits.data)


def tune_backbone(model):
    """The backbone's tuned tensors moved off their initialisation (LoRA's
    B and AdaptFormer's up are zeros there), as training would."""
    with torch.no_grad():
        for name, param in model.backbone.named_parameters():
            if param.requires_grad:
                param.add_(0.3 * torch.randn_like(param))


@pytest.mark.parametrize('method', ['lora', 'adaptformer', 'rein'])
def test_multi_task_reference_method_and_cvpt_in_one_batch(
        seg_packages, seg_base, tmp_path, method):
    """A LoRA (AdaptFormer, Rein) task and a CVPT task of the same base in
    one mixed batch on one backbone: each predicts what its own model does
    alone; the frozen ViT is held once."""
    cfg = load_config(osp.join(REPO, 'configs', method,
                               'upernet_vittiny_ade20k_demo.py'))
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=seg_base)
    made = dict(other=make_task(cfg, tmp_path, method, 4,
                                tune=tune_backbone),
                cvpt=seg_packages['cvpt', 'a'])
    data = dict(inputs=list(
        torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)))
    check_multi_task(made, data, ['cvpt', 'other', 'cvpt'],
                     lambda r: r.seg_logits.data)


def test_merge_refuses_a_backbone_without_updates(seg_packages, tmp_path):
    """export_task.py --merge on a CVPT checkpoint: a clear error, no file."""
    from mmseg_cvpt.apis import export_merged
    out = tmp_path / 'merged.pth'
    with pytest.raises(ValueError, match='no low-rank updates to merge'):
        export_merged(seg_packages['cvpt', 'a']['full'], str(out))
    assert not out.exists()
