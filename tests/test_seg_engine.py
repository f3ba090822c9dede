"""Unit tests of mmseg_cvpt.engine: checkpoints, optimiser, CPU dist setup."""
import io
import logging
import os

import numpy as np

import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import get_file_backend
from mmengine.logging import HistoryBuffer, MMLogger
from torch import nn

from mmseg_cvpt.engine import (AtomicLocalBackend,
                               TrainableOptimWrapperConstructor,
                               setup_cpu_distributed)


def test_runner_checkpoint_objects_load_weights_only():
    buffer = HistoryBuffer()
    buffer.update(1.5)
    state = dict(
        buffers={'loss': buffer},
        rng=torch.get_rng_state(),
        numpy_rng=np.random.get_state())
    f = io.BytesIO()
    torch.save(state, f)
    f.seek(0)
    loaded = torch.load(f, weights_only=True)
    assert loaded['buffers']['loss'].mean() == 1.5
    assert loaded['numpy_rng'][0] == 'MT19937'


def test_weights_only_still_refuses_arbitrary_getattr():

    class Evil:

        def __reduce__(self):
            return getattr, (HistoryBuffer, '__init__')

    f = io.BytesIO()
    torch.save({'x': Evil()}, f)
    f.seek(0)
    with pytest.raises(Exception, match='refusing getattr'):
        torch.load(f, weights_only=True)


def test_atomic_backend_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / 'ckpt.pth'
    backend = get_file_backend(
        str(path), backend_args=dict(backend='atomic_local'))
    assert isinstance(backend, AtomicLocalBackend)
    backend.put(b'complete', path)
    backend.put_text('text', tmp_path / 'last_checkpoint')
    with pytest.raises(TypeError):
        backend.put('not bytes', path)  # fails while writing
    assert path.read_bytes() == b'complete'
    assert (tmp_path / 'last_checkpoint').read_text() == 'text'
    assert sorted(os.listdir(tmp_path)) == ['ckpt.pth', 'last_checkpoint']
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's


class ListHandler(logging.Handler):

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


class Frozen(nn.Module):

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(*[nn.Linear(4, 4) for _ in range(20)])
        self.backbone.requires_grad_(False)
        self.prompts = nn.Parameter(torch.zeros(2, 4))
        self.head = nn.Linear(4, 3)


@pytest.mark.parametrize('paramwise_cfg', [None, dict(custom_keys={
    'head': dict(lr_mult=10.)
})])
def test_optimizer_sees_trainable_params_only(paramwise_cfg):
    model = Frozen()
    logger = MMLogger.get_instance('test_optim')
    handler = ListHandler()
    logger.addHandler(handler)
    constructor = TrainableOptimWrapperConstructor(
        dict(optimizer=dict(type='SGD', lr=0.1)), paramwise_cfg)
    optim = constructor(model).optimizer
    logger.removeHandler(handler)
    records = handler.messages
    params = [p for group in optim.param_groups for p in group['params']]
    trainable = [model.prompts, model.head.weight, model.head.bias]
    assert len(params) == 3 and all(
        any(p is t for t in trainable) for p in params)
    assert not any('requires_grad' in r for r in records)
    assert sum('frozen parameters are left out' in r for r in records) == 1
    if paramwise_cfg:
        lrs = {id(p): g['lr'] for g in optim.param_groups for p in g['params']}
        assert lrs[id(model.head.weight)] == pytest.approx(1.0)
        assert lrs[id(model.prompts)] == pytest.approx(0.1)


def test_setup_cpu_distributed_is_a_no_op_without_pytorch_launcher():
    cfg = Config(dict(launcher='none', model=dict(norm_cfg=dict(
        type='SyncBN'))))
    setup_cpu_distributed(cfg)
    assert cfg.model.norm_cfg.type == 'SyncBN'
    assert 'model_wrapper_cfg' not in cfg
