"""Where the frozen base of a tuned-only checkpoint may come from: never
from the network, past unreadable files to the documented fallback, and in
any precision that holds the same values. Tiny demo runs, CPU."""
import copy
import os
import os.path as osp

import pytest
import torch
from mmengine.runner import load_checkpoint

from mmseg_cvpt.apis import build_model, export_task
from mmseg_cvpt.models import backbone_of
from mmseg_cvpt.models.backbones import FrozenBaseError
from mmseg_cvpt.models.backbones.frozen_base import (decode_record,
                                                     encode_record,
                                                     fingerprint)
from test_pretrained_demo import SHIPPED
from test_task_packages import (  # noqa: F401 (fixtures)
    assert_same_state, base_moved, seg_base, seg_run,
    state_of, train_demo)
from tiny_runs import data_options, run_in_process

pytestmark = pytest.mark.filterwarnings('ignore:pkg_resources is deprecated')
# the shipped demo ViT's fingerprint, as it was before the canonical form
SHIPPED_FINGERPRINT = \
    'ee44616e85b1462a62c86839204d8f51ba2fe935f1d56456f309b08cb148ee65'


def with_record(source, out, **changes):
    """The state dict of checkpoint ``source`` with its record changed,
    saved to ``out``."""
    state = state_of(source)
    record = decode_record(state['backbone._extra_state'])
    state['backbone._extra_state'] = encode_record(dict(record, **changes))
    torch.save(dict(state_dict=state), out)
    return str(out)


def load_into_demo(cfg, checkpoint):
    model = build_model(cfg)
    load_checkpoint(model, checkpoint, map_location='cpu')
    return model


@pytest.fixture
def http_base(http_server):
    """A local HTTP server: (its URL of a base checkpoint, the requests it
    got)."""
    url, requests = http_server
    return f'{url}/base.pth', requests


def test_recorded_url_is_never_opened(seg_run, seg_base, http_base, tmp_path):
    url, requests = http_base
    crafted = with_record(seg_run['tuned'], tmp_path / 'url.pth',
                          checkpoint=url)
    model = load_into_demo(seg_run['cfg'], crafted)  # init_cfg's base
    assert backbone_of(model)[0].frozen_base['checkpoint'] == seg_base
    with base_moved(seg_base), pytest.raises(FrozenBaseError) as error:
        load_into_demo(seg_run['cfg'], crafted)
    assert f'{url}: not a local file' in str(error.value)
    assert f'{seg_base}: not found' in str(error.value)
    cfg = copy.deepcopy(seg_run['cfg'])
    cfg.model.backbone.base_checkpoint = url  # the override too
    with pytest.raises(FrozenBaseError, match=f'{url}: not a local file'):
        load_into_demo(cfg, seg_run['tuned'])
    with pytest.raises(ValueError, match=f'{url}: not a local file'):
        export_task(seg_run['full'], str(tmp_path / 'task.pth'),
                    base_checkpoint=url)
    assert requests == []


def test_unreadable_recorded_base_falls_back(seg_run, seg_base, tmp_path):
    truncated = tmp_path / 'truncated.pth'
    with open(seg_base, 'rb') as file:
        truncated.write_bytes(file.read()[:2000])
    crafted = with_record(seg_run['tuned'], tmp_path / 'crafted.pth',
                          checkpoint=str(truncated))
    model = load_into_demo(seg_run['cfg'], crafted)  # init_cfg's base
    assert backbone_of(model)[0].frozen_base['checkpoint'] == seg_base
    not_a_checkpoint = tmp_path / 'list.pth'
    torch.save([1, 2], not_a_checkpoint)
    cfg = copy.deepcopy(seg_run['cfg'])
    cfg.model.backbone.init_cfg.checkpoint = str(not_a_checkpoint)
    with pytest.raises(FrozenBaseError) as error:
        load_into_demo(cfg, crafted)
    assert f'{truncated}: unreadable (' in str(error.value)
    assert f'{not_a_checkpoint}: unreadable (TypeError: not a checkpoint' \
        in str(error.value)
    relative = with_record(seg_run['tuned'], tmp_path / 'relative.pth',
                           checkpoint=osp.relpath(seg_base))
    with pytest.raises(FrozenBaseError, match='not an absolute path'):
        load_into_demo(cfg, relative)


def test_fp16_base_trains_tests_and_exports(demo_root, tmp_path):
    weights = torch.load(SHIPPED)
    assert fingerprint(weights) == SHIPPED_FINGERPRINT  # fp32: unchanged
    half = {k: v.half() for k, v in weights.items()}
    assert fingerprint(half) == fingerprint(
        {k: v.float() for k, v in half.items()}) == fingerprint(
            weights, rounded_to='float16')
    base = str(tmp_path / 'vit_tiny_fp16.pth')
    torch.save(half, base)
    runner = train_demo(demo_root, tmp_path / 'train', 2, base)
    tuned = str(tmp_path / 'train' / 'iter_2.pth')
    runner.cfg.dump(str(tmp_path / 'config.py'))
    run_in_process('test.py', [
        str(tmp_path / 'config.py'), tuned, '--work-dir',
        str(tmp_path / 'test'), '--cfg-options'
    ] + data_options(demo_root))
    package = str(tmp_path / 'task.pth')
    export_task(tuned, package)
    model = load_into_demo(runner.cfg, package)
    assert_same_state(model.state_dict(), runner.model.state_dict())


def test_bf16_copy_is_a_precision_difference(seg_run, seg_base, tmp_path):
    weights = torch.load(seg_base)
    with base_moved(seg_base):
        torch.save({k: v.bfloat16() for k, v in weights.items()}, seg_base)
        try:
            with pytest.raises(FrozenBaseError,
                               match=f'{seg_base}: a precision difference: '
                               'its tensors are the base\'s rounded to '
                               'bfloat16'):
                load_into_demo(seg_run['cfg'], seg_run['tuned'])
            with pytest.raises(ValueError, match='a precision difference'):
                export_task(seg_run['full'], str(tmp_path / 'task.pth'),
                            base_checkpoint=seg_base)
        finally:
            os.remove(seg_base)
