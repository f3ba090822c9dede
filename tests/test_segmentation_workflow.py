"""End-to-end checks of the segmentation workflow on tiny CPU runs.

The tools run as their command lines run them, in this process
(tests/tiny_runs.py; distributed training and a fresh interpreter outside the
repo are processes), on a few synthetic 64x64 scenes of
tools/misc/make_ade20k_demo.py with the demo config
(configs/cvpt/upernet_vittiny_ade20k_demo.py). The package must be
installed (``pip install -e .``) for ``mmseg_cvpt::`` configs to resolve.
"""
import copy
import os.path as osp
import sys

import pytest
import torch

import mmseg_cvpt.engine  # noqa: F401  (torch.load of runner checkpoints)
from tiny_runs import (BASELINE_CFG, CVPT_CFG, DEMO_CFG, VPT_CFG,
                       check_test_output, data_options, dist_train_demo,
                       parse_counts, run, run_cli_in_process, run_in_process,
                       train_demo, validation_metric, write_config)
from tool_loading import load_tool

pytestmark = pytest.mark.filterwarnings('ignore:pkg_resources is deprecated')


@pytest.fixture(scope='module')
def demo_checkpoint(demo_root, tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('demo_train'))
    run_in_process('train.py', [DEMO_CFG, '--work-dir', work_dir,
                                '--cfg-options',
                                *data_options(demo_root, iters=2)])
    return osp.join(work_dir, 'iter_2.pth')


def tiny_vit(**backbone):
    """Config text shrinking a ViT-B UperNet config to a 4-layer ViT."""
    backbone = dict(
        img_size=(64, 64),
        patch_size=8,
        embed_dims=64,
        num_layers=4,
        num_heads=4,
        out_indices=(0, 1, 2, 3),
        init_cfg=None,
        **backbone)
    return f'''
model = dict(
    backbone={backbone!r},
    neck=dict(in_channels=[64] * 4, out_channels=32),
    decode_head=dict(in_channels=[32] * 4, channels=32, num_classes=6),
    auxiliary_head=dict(in_channels=32, channels=16, num_classes=6))
'''


@pytest.fixture(scope='module')
def count_params_tool():
    return load_tool('analysis/count_params.py')


@pytest.mark.parametrize('base, backbone_cfg, expected', [
    (CVPT_CFG, dict(num_prompts=8), 4 * 8 * 64),
    (VPT_CFG, dict(num_prompts=8), 4 * 8 * 64),
    (VPT_CFG, dict(num_prompts=8, prompt_depth='shallow'), 8 * 64),
    (BASELINE_CFG, {}, 0),
])
def test_count_params_tiny(tmp_path, count_params_tool, base, backbone_cfg,
                           expected):
    """Tiny versions of the three ADE20K configs: only prompts train in the
    backbone (layers x prompts x width, or nothing for the baseline)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    cfg = Config.fromfile(
        write_config(tmp_path / 'tiny.py',
                     f'_base_ = [{base!r}]\n' + tiny_vit(**backbone_cfg)))
    init_default_scope('mmseg')
    counts = count_params_tool.count_trainable(MODELS.build(cfg.model))
    assert counts['backbone'] == expected
    assert counts['heads'] > 0
    assert counts['total'] == counts['backbone'] + counts['heads']


# ---- distributed training on CPU ------------------------------------------
@pytest.mark.tool
def test_dist_train_two_cpu_ranks(demo_root, tmp_path, hook_module):
    """tools/dist_train.sh CONFIG 2: two gloo ranks, identical prompts."""
    work_dir = tmp_path / 'work'
    cfg = write_config(
        tmp_path / 'dist.py', f'''
        _base_ = [{DEMO_CFG!r}]
        custom_imports = dict(
            imports=['mmseg_cvpt', 'dump_trainable_hook'],
            allow_failed_imports=False)
        custom_hooks = [dict(type='DumpTrainableHook')]
        ''')
    out = dist_train_demo(cfg, work_dir, demo_root, 3, hook_module)
    assert 'gloo' in out
    ranks = [torch.load(work_dir / f'rank{r}.pth') for r in (0, 1)]
    assert 'backbone.prompts.tokens' in ranks[0]['final']
    for rank in ranks:
        assert rank['iter'] == 3
        tokens = rank['final']['backbone.prompts.tokens']
        assert not torch.equal(tokens,
                               rank['initial']['backbone.prompts.tokens'])
    for name, value in ranks[0]['final'].items():
        assert torch.equal(value, ranks[1]['final'][name]), name


# ---- test-time augmentation -----------------------------------------------
@pytest.mark.parametrize('flag', ['--aug-test', '--tta'])
def test_aug_test_runs_12_views(demo_root, demo_checkpoint, tmp_path, flag):
    out = run_in_process('test.py', [
        DEMO_CFG, demo_checkpoint, flag, '--work-dir', tmp_path,
        '--cfg-options', *data_options(demo_root)])
    assert 'merging 12 views per image' in out
    assert 'merged 48 views of 4 images (12 per image)' in out
    check_test_output(out, str(tmp_path))


def test_single_scale_test(demo_root, demo_checkpoint, tmp_path):
    out = run_in_process('test.py', [
        DEMO_CFG, demo_checkpoint, '--work-dir', tmp_path, '--cfg-options',
        *data_options(demo_root)])
    check_test_output(out, str(tmp_path),
                      validation_metric(osp.dirname(demo_checkpoint)))
    assert 'views per image' not in out


# ---- inheritance by downstream configs ------------------------------------
DOWNSTREAM = '''
_base_ = ['mmseg_cvpt::cvpt/upernet_vitb_ade20k.py']
model = dict(backbone=dict(num_prompts=50))
'''


def test_config_formatting_and_package_lookups_are_remembered():
    """Importing mmseg_cvpt makes mmengine format a config text with yapf
    once per process (pretty_text: the same text as yapf's own formatting)
    and ask once whether a scope's package is installed."""
    from mmengine.config import Config
    from mmengine.config import config as config_module
    from yapf.yapflib.yapf_api import FormatCode
    style = dict(based_on_style='pep8',
                 blank_line_before_nested_class_or_def=True,
                 split_before_expression_after_opening_paren=True)
    raw = Config.fromfile(DEMO_CFG, format_python_code=False).pretty_text
    cfg = Config.fromfile(DEMO_CFG)
    text = cfg.pretty_text
    assert text == FormatCode(raw, style_config=style)[0]
    formatted = config_module.FormatCode.cache_info()
    assert [cfg.pretty_text for _ in range(3)] == [text] * 3
    now = config_module.FormatCode.cache_info()
    assert (now.misses, now.hits) == (formatted.misses, formatted.hits + 3)
    assert config_module.is_installed('mmseg')
    assert 'mmseg' in config_module.is_installed.found
    assert not config_module.is_installed('no_such_package_here')


def test_config_files_are_read_again_when_they_change(tmp_path):
    """What a config file read (its bases merged) is remembered until the
    file or one of its bases changes: an edit of the base (same size)
    reaches its child; a second read comes from memory, as a copy."""
    from mmengine.config import Config
    from mmengine.config import config as config_module
    base, child = tmp_path / 'base.py', tmp_path / 'child.py'
    base.write_text('a = 1\nb = dict(c=2)\n')
    child.write_text("_base_ = ['./base.py']\nb = dict(d=3)\n")
    assert Config.fromfile(str(child)).to_dict() == dict(a=1,
                                                         b=dict(c=2, d=3))
    cache = config_module.Config._file2dict.cache
    entries = len(cache)
    Config.fromfile(str(child)).b.d = 4
    assert Config.fromfile(str(child)).b.d == 3
    assert len(cache) == entries
    base.write_text('a = 5\nb = dict(c=2)\n')
    assert Config.fromfile(str(child)).a == 5


def test_tools_config_text_is_not_reflowed(tmp_path):
    """load_config (how every tool reads a config) leaves the text as
    mmengine writes it, one key per line: yapf is not run (0.3 to 0.6 s a
    run), and the text the runner logs and dumps reads back to the same
    config."""
    from mmengine.config import Config
    from mmengine.config import config as config_module

    from mmseg_cvpt.engine import load_config
    cfg = load_config(DEMO_CFG, dict(marker=str(tmp_path)))  # a new text
    before = config_module.FormatCode.cache_info()
    text = copy.deepcopy(cfg).pretty_text
    assert config_module.FormatCode.cache_info() == before
    assert f"marker='{tmp_path}'" in text.splitlines()
    cfg.dump(str(tmp_path / 'dumped.py'))
    assert Config.fromfile(str(tmp_path / 'dumped.py')).to_dict() == \
        cfg.to_dict()


def test_inherit_via_tools(tmp_path, monkeypatch):
    """A config outside the repo builds through our tools (ViT-B, P=50),
    run in this process from the config's folder (that a fresh interpreter
    outside the repo resolves ``mmseg_cvpt::`` bases: test_inherit_via_import
    below)."""
    cfg = write_config(tmp_path / 'my_cvpt.py', DOWNSTREAM)
    monkeypatch.chdir(tmp_path)
    status, out = run_cli_in_process('analysis/count_params.py', [cfg])
    assert status == 0, out[-6000:]
    counts = parse_counts(out)
    assert counts['backbone'] == 12 * 50 * 768
    # train.py stops before training, naming the missing data set
    status, out = run_cli_in_process(
        'train.py', [cfg, '--work-dir', tmp_path / 'work'])
    assert status != 0
    expected = osp.join(str(tmp_path), 'data', 'ade', 'ADEChallengeData2016',
                        'images', 'training')
    assert f'Data set folder not found: {expected}' in out, out[-3000:]


@pytest.mark.tool
def test_inherit_via_import(tmp_path):
    """``import mmseg_cvpt`` is all a script needs before Config.fromfile:
    a fresh interpreter outside the repo (a process: this one has imported
    and registered everything already)."""
    cfg = write_config(tmp_path / 'my_cvpt.py', DOWNSTREAM)
    script = ('import mmseg_cvpt\n'
              'from mmengine.config import Config\n'
              f'cfg = Config.fromfile({cfg!r})\n'
              'print(cfg.model.backbone.type, cfg.model.backbone.num_prompts,'
              ' cfg.model.decode_head.num_classes)\n')
    out = run([sys.executable, '-c', script], cwd=tmp_path)
    assert 'CVPTViT 50 150' in out


# ---- exact resumption -----------------------------------------------------
def test_resume_continues_exactly(demo_root, tmp_path):
    """4 iterations + --resume to 8 == 8 iterations in one go, bit for bit.

    Same seed; the learning-rate schedule spans 8 iterations in every run,
    the interrupted run stops at 4, and the RNGStateHook restores exactly
    the states the uninterrupted run has at iteration 5 (prompt dropout and
    the data augmentation draw the same numbers). tests/test_reliability.py
    kills a run instead, with validation at the checkpointed iteration.
    """
    cfg = write_config(
        tmp_path / 'resume.py', f'''
        _base_ = [{DEMO_CFG!r}]
        param_scheduler = [
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                 end=2),
            dict(type='PolyLR', power=1.0, by_epoch=False, begin=2, end=8)]
        train_cfg = dict(max_iters=8, val_interval=8)
        default_hooks = dict(checkpoint=dict(interval=4))
        ''')

    train_demo(cfg, tmp_path / 'straight', demo_root)
    train_demo(cfg, tmp_path / 'resumed', demo_root, 'train_cfg.max_iters=4')
    out = train_demo(cfg, tmp_path / 'resumed', demo_root, resume=True)
    assert 'resumed epoch: 0, iter: 4' in out
    straight = torch.load(tmp_path / 'straight' / 'iter_8.pth')['state_dict']
    resumed = torch.load(tmp_path / 'resumed' / 'iter_8.pth')['state_dict']
    assert 'backbone.prompts.tokens' in straight
    before = torch.load(tmp_path / 'resumed' / 'iter_4.pth')['state_dict']
    assert not torch.equal(before['backbone.prompts.tokens'],
                           resumed['backbone.prompts.tokens'])
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name
