import pytest
from mmengine.registry import init_default_scope

from tiny_runs import DUMP_HOOK, make_demo_data, module_env


@pytest.fixture(autouse=True)
def mmseg_default_scope():
    """Start every test in mmseg's scope: a runner-based test leaves its own
    default scope (mmpretrain for classification) behind."""
    init_default_scope('mmseg')


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    """The synthetic ADE20K-layout demo data, 16 + 4 scenes."""
    return make_demo_data(tmp_path_factory.mktemp('ade20k_demo'))


@pytest.fixture
def hook_module(tmp_path):
    """An environment whose PYTHONPATH has the DUMP_HOOK hooks (the module
    dump_trainable_hook)."""
    return module_env(tmp_path, 'dump_trainable_hook', DUMP_HOOK)
