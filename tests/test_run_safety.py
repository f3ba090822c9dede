"""Runs that cannot go silently wrong: non-finite training steps stop the
run and never reach a checkpoint; one training per work dir."""
import glob
import json
import os.path as osp
import re
import signal
import socket
import subprocess
import sys

import pytest
import torch

from mmseg_cvpt.engine import NonFiniteTrainingError, run_lock
from mmseg_cvpt.engine.run_lock import LOCK_NAME
from tiny_runs import (DEMO_CFG, data_options, free_port, run,
                       run_cli_in_process, run_in_process,
                       run_in_process_unchecked, start, tool, tool_env,
                       write_config)

pytestmark = pytest.mark.filterwarnings('ignore:pkg_resources is deprecated')

# the demo at lr 1e6: the losses pass 1e12 at iteration 3, decode.loss_ce is
# nan at iteration 4, BatchNorm running variances are inf after iteration 2
DIVERGING = ('optim_wrapper.optimizer.lr=1e6', )


def train(demo_root, work_dir, iters, *options):
    """tools/train.py on the demo for ``iters`` iterations, in this
    process: ``(the error it stopped with or None, what it printed, ending
    with that error as ``NonFiniteTrainingError: ...``)``."""
    error, out = run_in_process_unchecked(
        'train.py', [DEMO_CFG, '--work-dir', work_dir, '--cfg-options',
                     *data_options(demo_root, iters=iters), *options])
    return error, out + (f'\n{type(error).__name__}: {error}'
                         if error else '')


def assert_finite_checkpoints(work_dir):
    """Every checkpoint in ``work_dir`` holds only finite model tensors;
    return their names."""
    paths = sorted(glob.glob(osp.join(work_dir, 'iter_*.pth')))
    for path in paths:
        for name, value in torch.load(path)['state_dict'].items():
            if value.is_floating_point():
                assert torch.isfinite(value).all(), (path, name)
    return [osp.basename(path) for path in paths]


# ---- non-finite training steps -------------------------------------------
@pytest.mark.parametrize('accumulate, what', [
    (1, 'iteration 4: loss terms decode.loss_ce=nan'),
    (2, 'iteration 6: non-finite gradients of backbone.prompts.tokens, '),
])
def test_non_finite_training_stops_the_run(demo_root, tmp_path, accumulate,
                                           what):
    """lr 1e6 exited 0 with nan checkpoints and mIoU 13.49; now the run
    stops at the first non-finite loss (or gradient, accumulated over two
    iterations) naming it, and writes no checkpoint."""
    error, out = train(demo_root, tmp_path, 8, *DIVERGING,
                       f'optim_wrapper.accumulative_counts={accumulate}')
    assert isinstance(error, NonFiniteTrainingError)
    assert re.search(
        'NonFiniteTrainingError: Non-finite training step at ' +
        re.escape(what) + r'.* The update was not applied and the run stops '
        r'\(0 non-finite steps skipped before, max_skips=0\)',
        out), out[-3000:]
    assert not re.search(r'mIoU: \d', out)
    assert assert_finite_checkpoints(tmp_path) == []


def test_non_finite_steps_are_skipped_up_to_max_skips(demo_root, tmp_path):
    """max_skips=2: iterations 4 and 5 are skipped with a warning, the
    third non-finite step stops the run."""
    error, out = train(demo_root, tmp_path, 8, *DIVERGING,
                       'default_hooks.non_finite.max_skips=2')
    assert isinstance(error, NonFiniteTrainingError)
    for skip, iteration in ((1, 4), (2, 5)):
        assert re.search(
            rf'WARNING - Non-finite training step at iteration {iteration}: '
            rf'loss terms decode\.loss_ce=nan.*: the update was skipped '
            rf'\({skip} of max_skips=2\)', out), out[-3000:]
    assert 'Non-finite training step at iteration 6: loss terms ' \
        'decode.loss_ce=nan' in out
    assert '(2 non-finite steps skipped before, max_skips=2)' in out
    assert assert_finite_checkpoints(tmp_path) == []


def test_checkpoint_with_non_finite_tensors_is_refused(demo_root, tmp_path):
    """A checkpoint every iteration at lr 1e6: iteration 1's is written,
    iteration 2's (BatchNorm running variances inf, losses still finite) is
    refused naming the tensors."""
    error, out = train(demo_root, tmp_path, 8, *DIVERGING,
                       'default_hooks.checkpoint.interval=1')
    assert isinstance(error, NonFiniteTrainingError)
    assert 'Refusing to save the checkpoint of iteration 2: 3 model tensors ' \
        'are not finite: decode_head.lateral_convs.0.bn.running_var' \
        in out, out[-3000:]
    assert assert_finite_checkpoints(tmp_path) == ['iter_1.pth']


# the demo without the check (a key of default_hooks cannot be None)
UNCHECKED = """
_base_ = [{base!r}]
default_hooks = dict(non_finite=dict(_delete_=True, type='EmptyCacheHook'))
"""


def test_check_does_not_change_a_healthy_run(demo_root, tmp_path):
    """The same losses and weights with the check and without it."""
    unchecked = write_config(tmp_path / 'unchecked.py',
                             UNCHECKED.format(base=DEMO_CFG))
    runs = {}
    for name, config in (('checked', DEMO_CFG), ('unchecked', unchecked)):
        out = run_in_process('train.py', [
            config, '--work-dir', tmp_path / name, '--cfg-options',
            *data_options(demo_root, iters=4)])
        assert ('NonFiniteCheckHook' in out) == (name == 'checked')
        scalars = glob.glob(
            str(tmp_path / name / '*' / 'vis_data' / 'scalars.json'))
        with open(scalars[0]) as f:
            losses = [json.loads(line).get('loss') for line in f]
        state = torch.load(tmp_path / name / 'iter_4.pth')['state_dict']
        runs[name] = losses, state
    (losses, state), (plain_losses, plain_state) = runs.values()
    assert losses == plain_losses and len([x for x in losses if x]) == 4
    assert state.keys() == plain_state.keys()
    for key, value in state.items():
        assert torch.equal(value, plain_state[key]), key


# ---- one training per work dir --------------------------------------------
# the lock module read alone (mmengine, not the 6 s of mmseg_cvpt's imports)
HOLD_LOCK = '''
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location('run_lock', sys.argv[2])
run_lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_lock)
with run_lock.work_dir_lock(sys.argv[1]):
    print('locked', flush=True)
    time.sleep(600)
'''


@pytest.fixture
def busy(tmp_path):
    """A work dir whose lock a live process holds (the process)."""
    work_dir = tmp_path / 'work'
    holder = start([sys.executable, '-c', HOLD_LOCK, str(work_dir),
                    run_lock.__file__])
    assert holder.stdout.readline() == 'locked\n'
    yield work_dir, holder
    holder.kill()
    holder.wait()


@pytest.mark.tool
def test_second_training_in_a_busy_work_dir_is_refused(demo_root, busy):
    """Two trainings in one work dir both ran and shared its files; now the
    second is refused before it writes anything, naming the holder."""
    work_dir, holder = busy
    status, out = run_cli_in_process('train.py', [
        DEMO_CFG, '--work-dir', work_dir, '--cfg-options',
        *data_options(demo_root, iters=2)])
    assert status == 2  # one line, no traceback: bad input
    assert 'Traceback' not in out
    assert (f'train.py: error: {work_dir} is in use by another training '
            f'({work_dir / LOCK_NAME}: PID {holder.pid} on host '
            f'{socket.gethostname()}, started ') in out, out[-3000:]
    assert [p.name for p in work_dir.iterdir()] == [LOCK_NAME]


@pytest.mark.tool
def test_lock_is_released_on_sigterm_and_a_stale_one_taken_over(
        demo_root, busy):
    """SIGTERM clears the holder's lock; a lock left by a killed training
    (its record, nobody holding it) is taken over with a warning."""
    work_dir, holder = busy
    holder.send_signal(signal.SIGTERM)
    assert holder.wait(timeout=60) == 128 + signal.SIGTERM
    lock = work_dir / LOCK_NAME
    assert lock.read_text() == ''
    lock.write_text(
        json.dumps(
            dict(pid=holder.pid, host='gone', started='then',
                 command='train')))
    out = run(tool('train.py') + [DEMO_CFG, '--work-dir',
                                  str(work_dir), '--cfg-options'] +
              data_options(demo_root, iters=1))
    assert (f'Taking over the stale lock {lock} (PID {holder.pid} on host '
            'gone, started then: train): that training ended without '
            'releasing it (killed?).') in out
    assert lock.read_text() == ''


@pytest.mark.tool
def test_busy_work_dir_refuses_every_rank(demo_root, busy):
    """Two gloo ranks in a busy work dir: rank 0 finds the lock taken, and
    rank 1 learns it from rank 0 instead of waiting for it in the Runner."""
    work_dir, holder = busy
    args = tool('train.py') + [
        DEMO_CFG, '--launcher', 'pytorch', '--work-dir',
        str(work_dir), '--cfg-options'
    ] + data_options(demo_root, iters=2) + ['env_cfg.dist_cfg.timeout=300']
    dist_env = dict(WORLD_SIZE='2', MASTER_ADDR='127.0.0.1',
                    MASTER_PORT=str(free_port()), CUDA_VISIBLE_DEVICES='')
    ranks = [
        start(args, tool_env(RANK=str(rank), LOCAL_RANK=str(rank),
                             **dist_env)) for rank in (0, 1)
    ]
    try:
        outs = [proc.communicate(timeout=120)[0] for proc in ranks]
    except subprocess.TimeoutExpired:
        pytest.fail('a rank of a refused distributed training hangs')
    finally:
        for proc in ranks:
            proc.kill()
            proc.wait()
    for proc, out in zip(ranks, outs):
        assert proc.returncode != 0
        assert f'PID {holder.pid} on host {socket.gethostname()}' in out, \
            out[-3000:]
