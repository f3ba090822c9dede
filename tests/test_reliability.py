"""Reliability on tiny CPU runs: no silent wrong results, exact resume, no
unexplained crash or hang, a data checker.

Each test covers one failure an adversarial user met (see each docstring);
the tools run as subprocesses where the failure is a process's behaviour
(exit code, kill -9, a stopped peer).
"""
import logging
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmseg.registry import MODELS
from PIL import Image

from mmseg_cvpt.engine import (check_loaded_state, check_train_inputs,
                               find_resume_checkpoint, load_config,
                               remove_stale_temporaries)
from mmseg_cvpt.engine.checkpoint import atomic_text_writes
from tiny_runs import (DEMO_CFG, REPO, built_once, data_options, free_port,
                       module_env, run_cli_in_process, run_in_process, start,
                       tool, tool_env, write_config)
from tool_loading import load_tool

pytestmark = pytest.mark.filterwarnings('ignore:pkg_resources is deprecated')



def build_demo_model(**backbone):
    """The demo config's model (random weights), backbone args changed."""
    cfg = Config.fromfile(DEMO_CFG)
    cfg.model.backbone.update(backbone)
    cfg.model.neck.in_channels = [cfg.model.backbone.embed_dims] * 4
    return MODELS.build(cfg.model)


# ---- 1. checkpoints of another architecture ------------------------------
def test_test_tool_refuses_checkpoint_of_another_architecture(
        demo_root, tmp_path):
    """A 96-wide checkpoint for the 64-wide demo model: an error naming the
    mismatched keys, not an mIoU and exit 0."""
    ckpt = tmp_path / 'wide.pth'
    torch.save(
        dict(state_dict=build_demo_model(embed_dims=96).state_dict()), ckpt)
    status, out = run_cli_in_process(
        'test.py',
        [DEMO_CFG, str(ckpt), '--work-dir',
         str(tmp_path / 'test'), '--cfg-options'] + data_options(demo_root))
    assert status != 0
    # every width-dependent tensor, the ViT's final norm included
    assert 'The checkpoint does not fit the model: 59 tensors of another ' \
        'shape: backbone.cls_token (1, 1, 96) (model: (1, 1, 64))' \
        in out, out[-3000:]
    assert not re.search(r'mIoU: \d', out)


@pytest.fixture(scope='module')
def demo_model():
    return build_demo_model()


def log_lines(function, *args, **kwargs):
    """Call ``function``; return what it logged to mmengine's logger."""
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        function(*args, **kwargs)
    finally:
        logger.removeHandler(handler)
    return records


def test_backbone_checkpoint_may_lack_prompts_and_heads_only_to_train(
        demo_model):
    state = demo_model.state_dict()
    backbone = {
        key: value
        for key, value in state.items()
        if key.startswith('backbone.') and 'prompts' not in key
    }
    logged = log_lines(check_loaded_state, demo_model, backbone)
    assert any('backbone.prompts.tokens' in line for line in logged)
    with pytest.raises(RuntimeError, match='weights missing from the '
                       'checkpoint: backbone.prompts.tokens'):
        check_loaded_state(demo_model, backbone, allow_new=False)
    check_loaded_state(demo_model, state, allow_new=False)


def test_missing_or_extra_vit_weights_are_errors(demo_model):
    state = demo_model.state_dict()
    shallower = {
        key: value
        for key, value in state.items()
        if not key.startswith('backbone.layers.3.')
    }
    with pytest.raises(RuntimeError,
                       match=r'missing from the checkpoint: '
                       r'backbone\.layers\.3\.'):
        check_loaded_state(demo_model, shallower)
    deeper = dict(state, **{'backbone.layers.4.ln1.weight': torch.ones(64)})
    with pytest.raises(RuntimeError,
                       match='no place for: backbone.layers.4.ln1.weight'):
        check_loaded_state(demo_model, deeper)


# ---- 2, 4, 5. exact resume after kill -9 ---------------------------------
HOOKS = '''
import os
import os.path as osp
import time

from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class AtIterationHook(Hook):
    """After iteration `at` (and its checkpoint), 'pause': say so and wait
    to be killed; 'link': hard-link last_checkpoint to last_checkpoint.at,
    which a later rewrite in place would change too."""
    priority = 'LOWEST'

    def __init__(self, at, action):
        self.at = at
        self.action = action

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 != self.at:
            return
        if self.action == 'link':
            path = osp.join(runner.work_dir, 'last_checkpoint')
            os.link(path, path + '.at')
        else:
            print('paused after iteration', self.at, flush=True)
            time.sleep(600)
'''

# validation at the checkpointed iterations, as in the ViT-B configs
RESUME_CFG = '''
_base_ = [{base!r}]
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
    dict(type='PolyLR', power=1.0, by_epoch=False, begin=2, end=8)]
train_cfg = dict(max_iters=8, val_interval=4)
default_hooks = dict(checkpoint=dict(interval=4), logger=dict(interval=1))
'''

WITH_HOOK = '''
_base_ = [{base!r}]
custom_imports = dict(imports=['mmseg_cvpt', 'test_hooks'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='AtIterationHook', at={at}, action={action!r})]
'''


def read_until(proc, pattern, timeout=300):
    """Lines of ``proc``'s output up to one matching ``pattern``."""
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if re.search(pattern, line):
                return lines
    finally:
        timer.cancel()
    raise AssertionError(''.join(lines)[-3000:])


def kill_when_paused(args, env):
    """Start ``args``; kill -9 it once it says it paused."""
    proc = start(args, env)
    try:
        read_until(proc, '^paused after iteration')
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture(scope='module')
def interrupted(demo_root, tmp_path_factory):
    """An uninterrupted 8-iteration run (in this process) and one killed
    after iteration 6 (a process); both checkpoint and validate at
    iteration 4. One pair of runs for the whole session: the tests copy
    the killed one and read the other."""
    tmp = built_once(tmp_path_factory, 'resume_after_kill',
                     lambda folder: run_and_kill(folder, demo_root))
    return types.SimpleNamespace(
        cfg=str(tmp / 'resume.py'), straight=tmp / 'straight',
        killed=tmp / 'killed')


def run_and_kill(tmp, demo_root):
    """The runs of ``interrupted`` in the folder ``tmp``."""
    env = module_env(tmp, 'test_hooks', HOOKS)
    cfg = write_config(tmp / 'resume.py', RESUME_CFG.format(base=DEMO_CFG))
    straight_cfg = write_config(
        tmp / 'straight.py',
        WITH_HOOK.format(base=cfg, at=4, action='link'))
    killed_cfg = write_config(
        tmp / 'killed.py', WITH_HOOK.format(base=cfg, at=6, action='pause'))
    sys.path.insert(0, str(tmp))  # test_hooks, for the run in this process
    try:
        run_in_process('train.py', [straight_cfg, '--work-dir',
                                    tmp / 'straight', '--cfg-options',
                                    *data_options(demo_root)])
    finally:
        sys.path.remove(str(tmp))
    kill_when_paused(
        tool('train.py') +
        [killed_cfg, '--work-dir',
         str(tmp / 'killed'), '--cfg-options'] + data_options(demo_root),
        env)


def resume(interrupted, demo_root, work_dir):
    """Copy the killed run's work dir to ``work_dir``; ``--resume`` there
    (in this process)."""
    shutil.copytree(interrupted.killed, work_dir)
    return work_dir, lambda: run_in_process(
        'train.py', [interrupted.cfg, '--work-dir', work_dir, '--resume',
                     '--cfg-options', *data_options(demo_root)])


def assert_same_weights(straight_dir, resumed_dir):
    straight = torch.load(straight_dir / 'iter_8.pth')['state_dict']
    resumed = torch.load(resumed_dir / 'iter_8.pth')['state_dict']
    assert 'backbone.prompts.tokens' in straight
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name


@pytest.mark.tool
def test_resume_after_kill_is_exact_with_validation_at_the_checkpoint(
        interrupted, demo_root, tmp_path):
    """kill -9 at iteration 6, --resume from iteration 4, where validation
    ran right after the checkpoint: the same weights as the straight run."""
    work_dir, train = resume(interrupted, demo_root, tmp_path / 'work')
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_4.pth'))
    out = train()
    assert 'resumed epoch: 0, iter: 4' in out
    assert_same_weights(interrupted.straight, work_dir)


@pytest.mark.tool
def test_resume_falls_back_when_last_checkpoint_is_empty(
        interrupted, demo_root, tmp_path):
    """An empty last_checkpoint (killed while mmengine rewrote it) and the
    temporary file of an interrupted checkpoint write: --resume continues
    from the newest intact checkpoint and removes the temporary file."""
    work_dir, train = resume(interrupted, demo_root, tmp_path / 'work')
    (work_dir / 'last_checkpoint').write_text('')
    stale = work_dir / '.iter_8.pth.x1y2z3w4.tmp'
    stale.write_bytes(b'\0' * 1000)
    out = train()
    assert (f'last_checkpoint is empty: resuming from the newest intact '
            f'checkpoint, {work_dir / "iter_4.pth"}') in out
    assert 'resumed epoch: 0, iter: 4' in out
    assert f'Removed {stale}, left by an interrupted write' in out
    assert not stale.exists()
    assert_same_weights(interrupted.straight, work_dir)


@pytest.mark.tool
def test_resume_in_a_copied_work_dir_uses_its_own_checkpoint(
        interrupted, demo_root, tmp_path):
    """The copy's last_checkpoint names the original folder's iter_4.pth:
    --resume warns and continues from the copy's own iter_4.pth."""
    work_dir, train = resume(interrupted, demo_root, tmp_path / 'work')
    out = train()
    assert (f'{work_dir / "last_checkpoint"} names '
            f'{interrupted.killed / "iter_4.pth"}, outside {work_dir} (a '
            'copied work dir? To continue from that file: --resume '
            '--cfg-options load_from=PATH): resuming from the newest intact '
            f'checkpoint, {work_dir / "iter_4.pth"}') in out, out[-3000:]
    assert f'Load checkpoint from {work_dir / "iter_4.pth"}' in out
    assert 'resumed epoch: 0, iter: 4' in out
    assert_same_weights(interrupted.straight, work_dir)


@pytest.mark.tool  # the interrupted fixture's runs are processes
def test_last_checkpoint_is_replaced_not_rewritten(interrupted):
    """The straight run wrote last_checkpoint at iterations 4 and 8; the
    link taken after iteration 4 still holds the old file's content."""
    straight = interrupted.straight
    assert (straight / 'last_checkpoint.at').read_text() == str(
        straight / 'iter_4.pth')
    assert (straight / 'last_checkpoint').read_text() == str(
        straight / 'iter_8.pth')


def test_atomic_text_writes(tmp_path):
    """Within the block the old file stays whole until the new one is
    complete; mmengine's plain ``open(path, 'w')`` empties it at once."""
    module = types.ModuleType('writer')
    exec(
        textwrap.dedent('''
        def rewrite(path, text):
            with open(path, 'w') as f:
                f.write(text)
                return open(path).read()  # what a reader sees meanwhile
        '''), module.__dict__)
    path = tmp_path / 'last_checkpoint'
    path.write_text('old')
    with atomic_text_writes(module):
        assert module.rewrite(path, 'new') == 'old'
    assert path.read_text() == 'new'
    assert module.rewrite(path, 'plain') == ''
    assert sorted(p.name for p in tmp_path.iterdir()) == ['last_checkpoint']


def test_find_resume_checkpoint(tmp_path):
    for step in (2, 4, 6):
        torch.save({'step': step}, tmp_path / f'iter_{step}.pth')
    newest = tmp_path / 'iter_6.pth'
    newest.write_bytes(newest.read_bytes()[:100])  # killed while written
    last = tmp_path / 'last_checkpoint'
    fallback = str(tmp_path / 'iter_4.pth')
    assert find_resume_checkpoint(str(tmp_path)) == fallback  # no file
    last.write_text(str(tmp_path / 'iter_9.pth'))
    assert find_resume_checkpoint(str(tmp_path)) == fallback  # dangling
    last.write_text(str(newest))
    assert find_resume_checkpoint(str(tmp_path)) == fallback  # truncated
    last.write_text(str(tmp_path / 'iter_2.pth'))
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path /
                                                        'iter_2.pth')
    assert find_resume_checkpoint(str(tmp_path / 'none')) is None
    copy = tmp_path / 'copy'  # last_checkpoint names the original's file
    shutil.copytree(tmp_path, copy, ignore=shutil.ignore_patterns('copy'))
    assert log_lines(find_resume_checkpoint, str(copy)) == [
        f'{copy / "last_checkpoint"} names {tmp_path / "iter_2.pth"}, '
        f'outside {copy} (a copied work dir? To continue from that file: '
        '--resume --cfg-options load_from=PATH): resuming from the newest '
        f'intact checkpoint, {copy / "iter_4.pth"}.'
    ]


def test_remove_stale_temporaries_keeps_other_files(tmp_path):
    stale = tmp_path / '.iter_15.pth.ab_cd123.tmp'
    kept = ['.hidden.tmp', 'iter_15.pth', 'notes.tmp']
    for name in [stale.name] + kept:
        (tmp_path / name).write_bytes(b'x')
    assert remove_stale_temporaries(str(tmp_path)) == [str(stale)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


# ---- 3. a distributed peer that stops responding -------------------------
@pytest.mark.tool
def test_stopped_peer_ends_the_other_rank_with_an_error(demo_root, tmp_path):
    """Two gloo ranks; rank 1 is stopped (kill -STOP) while training: rank 0
    exits non-zero within the configured timeout, saying what happened."""
    timeout = 10
    args = tool('train.py') + [
        DEMO_CFG, '--launcher', 'pytorch', '--work-dir',
        str(tmp_path / 'work'), '--cfg-options'
    ] + data_options(
        demo_root, iters=1000) + [f'env_cfg.dist_cfg.timeout={timeout}']
    dist_env = dict(
        WORLD_SIZE='2',
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(free_port()),
        CUDA_VISIBLE_DEVICES='')
    with open(tmp_path / 'rank1.log', 'w') as rank1_log:
        ranks = [
            start(
                args,
                tool_env(RANK=str(rank), LOCAL_RANK=str(rank), **dist_env),
                stdout=subprocess.PIPE if rank == 0 else rank1_log)
            for rank in (0, 1)
        ]
    try:
        read_until(ranks[0], r'Iter\(train\) \[\s*2/1000\]')
        ranks[1].send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        out = ranks[0].communicate(timeout=timeout + 120)[0]
        elapsed = time.monotonic() - stopped
    finally:
        for proc in ranks:
            proc.kill()
            proc.wait()
    assert ranks[0].returncode == 1, out[-3000:]
    assert 'PeerLostError: Rank 0 of 2: a peer stopped responding (no ' \
        f'answer within env_cfg.dist_cfg.timeout={timeout} s)' in out, \
        out[-3000:]
    assert elapsed < timeout + 30


# ---- 6, 8. data and inputs -----------------------------------------------
@pytest.fixture(scope='module')
def check_dataset():
    return load_tool('misc/check_dataset.py')


def demo_copy(demo_root, tmp_path):
    root = tmp_path / 'data'
    shutil.copytree(demo_root, root)
    return root


def train_files(root, index):
    name = f'ADE_demo_training_{index:05d}'
    return (root / 'images' / 'training' / f'{name}.jpg',
            root / 'annotations' / 'training' / f'{name}.png')


def check_train_split(check_dataset, root, capsys):
    """Run the checker on the training split at ``root``."""
    code = check_dataset.main(
        [DEMO_CFG, '--cfg-options', f'train_dataloader.dataset.data_root='
         f'{root}'])
    return code, capsys.readouterr().out


def test_check_dataset_accepts_the_demo_data(check_dataset, demo_root,
                                             capsys):
    code, out = check_train_split(check_dataset, demo_root, capsys)
    assert code == 0, out
    assert 'reading 16 samples' in out
    assert re.search(r'0 wall\s+[\d,]+\s+\d', out)
    assert 'No problems found.' in out


def test_check_dataset_reports_planted_problems(check_dataset, demo_root,
                                                tmp_path, capsys):
    root = demo_copy(demo_root, tmp_path)
    lone_image = train_files(root, 0)[0]
    train_files(root, 0)[1].unlink()
    lone_annotation = root / 'annotations' / 'training' / 'extra.png'
    shutil.copy(train_files(root, 1)[1], lone_annotation)
    out_of_range = train_files(root, 2)[1]
    label = np.array(Image.open(out_of_range))
    label[:4, :4] = 200  # 199 after reduce_zero_label; 6 classes
    Image.fromarray(label).save(out_of_range)
    smaller = train_files(root, 3)[1]
    Image.open(smaller).resize((32, 32), Image.NEAREST).save(smaller)
    unreadable = train_files(root, 4)[0]
    unreadable.write_bytes(b'not an image')

    code, out = check_train_split(check_dataset, root, capsys)
    assert code == 1
    assert f'1 images without an annotation: {lone_image}' in out
    assert f'1 annotations without an image: {lone_annotation}' in out
    assert re.search(
        r'label value 199 .* outside \[0, 6\) and not the ignore index 255, '
        rf'in 1 annotations:\n\s+{out_of_range}', out), out
    assert f'{smaller} 32x32, image 64x64' in out
    assert f'1 unreadable files:\n    {unreadable}' in out
    assert '5 problems found.' in out


def test_check_dataset_names_multi_channel_label_maps(check_dataset,
                                                     demo_root, tmp_path,
                                                     capsys):
    """RGB and LA maps are named with their mode, not as a size mismatch;
    a palette map is read as its indices (no problem)."""
    root = demo_copy(demo_root, tmp_path)
    rgb, grey_alpha, palette = (train_files(root, i)[1] for i in range(3))
    for path, mode in ((rgb, 'RGB'), (grey_alpha, 'LA')):
        Image.open(path).convert(mode).save(path)
    indices = Image.open(palette)
    as_palette = Image.new('P', indices.size)
    as_palette.putdata(list(indices.getdata()))
    as_palette.putpalette([v for i in range(256) for v in (i, i, i)])
    as_palette.save(palette)

    code, out = check_train_split(check_dataset, root, capsys)
    assert code == 1
    assert re.search(r'2 label maps with several channels .*\n'
                     rf"    {rgb}: 3 channels \(PIL mode 'RGB'\)\n"
                     rf"    {grey_alpha}: 2 channels \(PIL mode 'LA'\)", out)
    assert 'size differs' not in out and str(palette) not in out
    assert '1 problems found.' in out


def test_empty_image_folder_is_named(check_dataset, demo_root, tmp_path,
                                     capsys):
    root = demo_copy(demo_root, tmp_path)
    images = root / 'images' / 'training'
    shutil.rmtree(images)
    images.mkdir()
    code, out = check_train_split(check_dataset, root, capsys)
    assert code == 1
    assert f'Data set folder is empty: {images}' in out


def test_train_reports_all_missing_inputs_before_the_config_dump(
        tmp_path, monkeypatch):
    """The ViT-B config with neither its data nor its pretrained weights:
    one error names both, before the runner prints the config."""
    cfg = osp.join(REPO, 'configs', 'cvpt', 'upernet_vitb_ade20k.py')
    monkeypatch.chdir(tmp_path)  # the config's relative paths start here
    status, out = run_cli_in_process(
        'train.py', [cfg, '--work-dir', str(tmp_path / 'work')])
    assert status != 0
    data = tmp_path / 'data' / 'ade' / 'ADEChallengeData2016' / 'images'
    assert f'Data set folder not found: {data}/training' in out, out[-3000:]
    assert f'Data set folder not found: {data}/validation' in out
    weights = tmp_path / 'pretrain' / 'vit_base_patch16_224_in21k_mmseg.pth'
    assert f'Pretrained checkpoint not found: {weights}' in out
    assert 'Config:' not in out


def test_preflight_reports_unpaired_files(demo_root, tmp_path):
    root = demo_copy(demo_root, tmp_path)
    train_files(root, 5)[1].unlink()
    cfg = load_config(
        DEMO_CFG,
        {f'{loader}.dataset.data_root': str(root)
         for loader in ('train_dataloader', 'val_dataloader')})
    with pytest.raises(FileNotFoundError,
                       match='1 images without an annotation: ' +
                       re.escape(str(train_files(root, 5)[0]))):
        check_train_inputs(cfg)


# ---- 7. backbone arguments -----------------------------------------------
@pytest.mark.parametrize('vit', ['CVPTViT', 'VPTViT'])
def test_out_indices_outside_the_layers_raise(vit):
    with pytest.raises(ValueError, match=r'out_indices \(5,\) names layers '
                       r'\[5\] that a 2-layer ViT does not have'):
        MODELS.build(
            dict(type=vit, img_size=32, patch_size=8, embed_dims=32,
                 num_layers=2, num_heads=2, num_prompts=2, out_indices=(5,)))


# ---- 9. configs given relative to the package (mim run) ------------------
def test_relative_config_path_resolves_from_any_folder(tmp_path,
                                                       monkeypatch):
    """``mim run mmseg_cvpt count_params configs/...`` starts the tool in
    the user's folder: the path names the installed package's config."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config('configs/cvpt/upernet_vittiny_ade20k_demo.py')
    assert cfg.model.backbone.num_prompts == 8
    with pytest.raises(FileNotFoundError, match='configs/none.py'):
        load_config('configs/none.py')
