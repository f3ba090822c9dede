"""Checkpoints written by earlier code still load, give the same outputs and
resume.

tests/legacy/3af09e5/ was written by tests/legacy/make_fixture.py at commit
3af09e5: for every demo method the full state dict of a model with random
tuned tensors, two images and what that code computed from them (backbone
features, decode-head logits), and a 2-iteration CVPT demo training's
tuned-only runner checkpoint.
"""
import os
import os.path as osp
import shutil

import pytest
import torch

from mmseg_cvpt.apis.task_package import build_model
from mmseg_cvpt.engine import check_loaded_state, load_config
from tiny_runs import REPO, data_options, run_in_process

FIXTURE = osp.join(REPO, 'tests', 'legacy', '3af09e5')
METHODS = ('cvpt', 'vpt', 'bpt', 'davpt', 'baseline')
TOLERANCE = 1e-5


def demo_config(method):
    return osp.join(REPO, 'configs', method, 'upernet_vittiny_ade20k_demo.py')


@pytest.mark.parametrize('method', METHODS)
def test_legacy_state_dict_gives_the_same_outputs(method):
    """The state dict loads strictly (every key, no extra, same shapes) and
    the features and logits equal those of the code that wrote it."""
    fixture = torch.load(osp.join(FIXTURE, f'{method}.pth'))
    cfg = load_config(demo_config(method))
    cfg.model.backbone.init_cfg = None  # every weight from the fixture
    model = build_model(cfg)
    state_dict = fixture['state_dict']
    check_loaded_state(model, state_dict, allow_new=False)
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    with torch.no_grad():
        features = model.backbone(fixture['images'])
        logits = model._forward(fixture['images'])
    assert len(features) == len(fixture['features'])
    for new, old in zip(features, fixture['features']):
        assert (new - old).abs().max() < TOLERANCE
    assert (logits - fixture['logits']).abs().max() < TOLERANCE


def test_legacy_runner_checkpoint_resumes(tmp_path, demo_root):
    """A tuned-only runner checkpoint of the earlier code resumes: the
    frozen ViT comes back from the config's pretrained checkpoint (the
    recorded path was the writer's checkout), and training goes on from
    iteration 2 to 4."""
    work_dir = tmp_path / 'work'
    os.makedirs(work_dir)
    checkpoint = work_dir / 'iter_2.pth'
    shutil.copy(osp.join(FIXTURE, 'runner', 'iter_2.pth'), checkpoint)
    (work_dir / 'last_checkpoint').write_text(str(checkpoint))
    out = run_in_process('train.py', [
        demo_config('cvpt'), '--work-dir', str(work_dir), '--resume',
        '--cfg-options'
    ] + data_options(demo_root, iters=4))
    assert 'resumed epoch: 0, iter: 2' in out
    assert osp.isfile(work_dir / 'iter_4.pth')
    resumed = torch.load(work_dir / 'iter_4.pth', weights_only=False)
    assert resumed['meta']['iter'] == 4
