import pytest
from mmengine.registry import init_default_scope


@pytest.fixture(autouse=True)
def mmseg_default_scope():
    """Start every test in mmseg's scope: a runner-based test leaves its own
    default scope (mmpretrain for classification) behind."""
    init_default_scope('mmseg')
