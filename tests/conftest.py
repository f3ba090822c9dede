import pytest
from mmengine.registry import init_default_scope

from seg_helpers import hook_env, run, tool


@pytest.fixture(autouse=True)
def mmseg_default_scope():
    """Start every test in mmseg's scope: a runner-based test leaves its own
    default scope (mmpretrain for classification) behind."""
    init_default_scope('mmseg')


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ade20k_demo'))
    run(tool('misc/make_ade20k_demo.py') +
        [root, '--num-train', '16', '--num-val', '4'])
    return root


@pytest.fixture
def hook_module(tmp_path):
    """PYTHONPATH entry with the DumpTrainableHook module."""
    return hook_env(tmp_path)
