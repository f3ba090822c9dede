"""A resume under another world size (WorldSizeCheckHook): recorded in
checkpoints, a warning on ``--resume``, an error with ``--strict-resume``.

One 2-process run (tools/dist_train.sh, two gloo ranks) of 2 iterations;
its work dir is copied and resumed with 1 process, as a user would: that
process is this one (tools/train.py as its command line runs it).
"""
import os
import re
import shutil

import pytest
import torch

from tiny_runs import (DEMO_CFG, built_once, data_options, dist_train_demo,
                       run_cli_in_process)

pytestmark = pytest.mark.filterwarnings('ignore:pkg_resources is deprecated')

MISMATCH = re.compile(r'saved with world size (\d+) in a run with world '
                      r'size (\d+)')


@pytest.fixture(scope='module')
def two_ranks(demo_root, tmp_path_factory):
    """The work dir of a 2-process run, checkpointed at iteration 2 (one
    run for the whole session: the tests copy it)."""
    return built_once(
        tmp_path_factory, 'world_size_two_ranks',
        lambda work_dir: dist_train_demo(DEMO_CFG, work_dir, demo_root, 2,
                                         dict(os.environ)))


def resume(work_dir, demo_root, iters, *flags):
    """``tools/train.py --resume`` with 1 process (this one), on to
    ``iters``: ``(exit status, what it printed)``."""
    return run_cli_in_process(
        'train.py',
        [DEMO_CFG, '--work-dir', work_dir, '--resume', *flags,
         '--cfg-options'] + data_options(demo_root) +
        [f'train_cfg.max_iters={iters}'])


def copy_run(two_ranks, work_dir):
    shutil.copytree(two_ranks, work_dir)
    return work_dir


def world_size_of(checkpoint):
    return torch.load(checkpoint, weights_only=False)['meta']['world_size']


@pytest.mark.tool
def test_checkpoint_records_the_world_size(two_ranks):
    assert world_size_of(two_ranks / 'iter_2.pth') == 2


@pytest.mark.tool
def test_resume_with_another_world_size_warns(two_ranks, demo_root,
                                              tmp_path):
    """2 processes resumed with 1: a warning naming both, the run goes on;
    resuming that 1-process run with 1 process (strict) says nothing."""
    work_dir = copy_run(two_ranks, tmp_path / 'work')
    status, out = resume(work_dir, demo_root, 3)
    assert status == 0, out[-6000:]
    assert 'resumed epoch: 0, iter: 2' in out
    assert MISMATCH.findall(out) == [('2', '1')]
    assert ('the effective batch size (per-process batch 2 x world size) '
            'changes from 4 to 2 and the data order changes') in out
    assert 'resume with 2 processes (bash tools/dist_train.sh' in out
    assert world_size_of(work_dir / 'iter_3.pth') == 1

    status, out = resume(work_dir, demo_root, 4, '--strict-resume')
    assert status == 0, out[-6000:]
    assert 'resumed epoch: 0, iter: 3' in out
    assert not MISMATCH.search(out)
    assert 'records no world size' not in out
    assert (work_dir / 'iter_4.pth').is_file()


@pytest.mark.tool
def test_strict_resume_refuses_another_world_size(two_ranks, demo_root,
                                                  tmp_path):
    """--strict-resume: the same resume is a one-line error naming both
    world sizes and the fix, before any training."""
    work_dir = copy_run(two_ranks, tmp_path / 'work')
    status, out = resume(work_dir, demo_root, 3, '--strict-resume')
    assert status != 0
    errors = [
        line for line in out.splitlines()
        if '--strict-resume: the checkpoint was saved with world size 2, '
        'this run has world size 1' in line
    ]
    assert len(errors) == 1, out[-6000:]
    assert 'WorldSizeMismatchError' in errors[0] or \
        errors[0].startswith('train.py: error: ')
    assert 'resume with 2 processes' in errors[0]
    assert not (work_dir / 'iter_3.pth').exists()
