"""The shape of the core: what VPTViT and CVPTViT share knows no add-on."""
import inspect
import os.path as osp
import re

import torch
from mmseg.registry import MODELS

from mmseg_cvpt.models import CVPTViT, VPTViT
from mmseg_cvpt.models.backbones.frozen_base import FrozenBase
from mmseg_cvpt.models.prompt_cache import PromptCache
from test_fast_paths import TINY
from tiny_runs import REPO

# the concepts of BPT and DA-VPT
ADD_ON_WORDS = ('whiten', 'calibrat', 'guidance', 'guided', 'prox', 'bpt',
                'da-vpt', 'davpt', 'burst')


def shared_classes():
    """The classes both backbones are made of (their common bases and the
    components the core composes)."""
    common = set(VPTViT.__mro__) & set(CVPTViT.__mro__)
    ours = [cls for cls in common if cls.__module__.startswith('mmseg_cvpt')]
    return ours + [FrozenBase, PromptCache]


def test_shared_core_names_no_add_on():
    classes = shared_classes()
    assert len(classes) >= 3  # the core and its two components
    for cls in classes:
        source = inspect.getsource(cls).lower()
        found = [word for word in ADD_ON_WORDS if word in source]
        assert not found, (cls.__name__, found)


# ---- docs/architecture.md's worked example ----------------------------------
def example_method():
    """The ``ParallelAdapterViT`` of docs/architecture.md, run from the
    page."""
    text = open(osp.join(REPO, 'docs', 'architecture.md')).read()
    code = re.search(r'```python\n(.*?)```', text, re.S).group(1)
    namespace = {}
    exec(compile(code, 'docs/architecture.md', 'exec'), namespace)
    return namespace['ParallelAdapterViT']


def test_worked_example_is_a_method_on_the_core():
    example_method()
    torch.manual_seed(0)
    model = MODELS.build(dict(TINY, type='ParallelAdapterViT', _scope_='mmseg',
                              drop_path_rate=0.3))
    model.init_weights()
    plain = MODELS.build(dict(TINY, type='VPTViT', _scope_='mmseg'))
    plain.load_state_dict(model.state_dict(), strict=False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith('adapters.') for n in trainable)
    assert set(model.state_dict()) == set(plain.state_dict()) | {
        k for k in model.state_dict() if k.startswith('adapters.')}
    images = torch.randn(2, 3, 32, 32)
    model.train()
    for new, old in zip(model(images), plain.eval()(images)):
        assert torch.equal(new, old)  # zero-initialised, frozen ViT in eval
    sum(out.sum() for out in model(images)).backward()
    assert all(p.grad is not None for n, p in model.named_parameters()
               if n in trainable and n.endswith('2.weight'))
    with torch.no_grad():
        model.adapters[0][2].bias.fill_(1.)
    assert not torch.equal(model(images)[0], plain(images)[0])
