"""The shape of the core: what VPTViT and CVPTViT share knows no add-on."""
import csv
import inspect
import json
import os
import os.path as osp
import re
import sys

import pytest
import torch
from mmseg.registry import MODELS

from mmseg_cvpt.methods import METHODS
from mmseg_cvpt.models import CVPTViT, VPTViT
from mmseg_cvpt.models.backbones.frozen_base import FrozenBase
from mmseg_cvpt.models.prompt_cache import PromptCache
from test_fast_paths import TINY
from tiny_runs import COMPARE_RUNS, REPO, data_options, validation_metric
from tool_loading import load_tool

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
def page_code():
    """The python blocks of docs/architecture.md: the method's module and
    its config."""
    text = open(osp.join(REPO, 'docs', 'architecture.md')).read()
    return re.findall(r'```python\n(.*?)```', text, re.S)[:2]


@pytest.fixture
def example_method():
    """The ``ParallelAdapterViT`` of docs/architecture.md, run from the
    page (which registers the method too: taken out of the registry
    after the test)."""
    namespace = {}
    exec(compile(page_code()[0], 'docs/architecture.md', 'exec'), namespace)
    yield namespace['ParallelAdapterViT']
    METHODS.pop('parallel_adapter', None)


def test_worked_example_is_a_method_on_the_core(example_method):
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
               if n in trainable and n.endswith('up.weight'))
    with torch.no_grad():
        model.adapters[0].up.bias.fill_(1.)
    assert not torch.equal(model(images)[0], plain(images)[0])


@pytest.mark.tool
@COMPARE_RUNS  # the starters the group's earlier runs left idle
def test_run_starter_serves_the_callers_environment(tmp_path, monkeypatch):
    """Runs forked by compare_methods' starters see the caller's
    environment of each run; a starter is used again while only
    :data:`RUN_TIME_VARIABLES` changed (pytest's name of the test changes
    per test). A changed variable read at start (``PYTHONPATH``) starts a
    new one: the worked example's run below imports its module so."""
    from mmseg_cvpt.engine.tool_runs import run_in_own_process
    script = tmp_path / 'report.py'
    script.write_text(
        'import json, os, sys\n'
        'json.dump(dict(starter=os.getppid(), test=os.environ['
        "'PYTEST_CURRENT_TEST']), "
        "open(sys.argv[1], 'w'))\n")

    def report(name):
        spec = tmp_path / f'{name}.json'
        spec.write_text(json.dumps(dict(
            steps=[[sys.executable, str(script), str(tmp_path / name)]],
            logs=[str(tmp_path / f'{name}.log')], train_dir=str(tmp_path))))
        assert run_in_own_process(str(spec), 1, str(tmp_path)) == 0
        return json.loads((tmp_path / name).read_text())

    first = report('first')
    monkeypatch.setenv('PYTEST_CURRENT_TEST', 'another test (call)')
    second = report('second')
    assert second == dict(first, test='another test (call)')


@pytest.mark.tool  # compare_methods.py trains each method in a process
@COMPARE_RUNS
def test_worked_example_method_is_listed_and_run_by_compare_methods(
        tmp_path, demo_root, monkeypatch, capsys):
    """The page's method, its config and its registry entry, and nothing
    else: compare_methods.py lists it, trains it (tools/train.py in its
    own process, which imports the module through the config) and reports
    what the run logged."""
    module, config = page_code()
    (tmp_path / 'parallel_adapter.py').write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(
        [str(tmp_path), os.environ.get('PYTHONPATH', '')]))
    folder = tmp_path / 'configs' / 'parallel_adapter'
    folder.mkdir(parents=True)
    config = config.replace(
        "'../baseline/", repr(osp.join(REPO, 'configs', 'baseline', ''))[:-1])
    (folder / 'upernet_vittiny_ade20k_demo.py').write_text(config)
    import parallel_adapter  # noqa: F401  (the class and the entry)
    try:
        compare = load_tool('analysis/compare_methods.py')
        assert METHODS['parallel_adapter'].label == 'parallel adapter'
        with pytest.raises(SystemExit):
            compare.parse_args(['--help'])
        assert 'parallel_adapter = parallel adapter' in ' '.join(
            capsys.readouterr().out.split())
        out = str(tmp_path / 'compare')
        assert compare.main([
            '--methods', 'parallel_adapter', '--prompts', '2', '--iters',
            '2', '--no-aug-test', '--out', out, '--config',
            str(folder / 'upernet_vittiny_ade20k_demo.py'), '--cfg-options',
            *data_options(demo_root)]) == 0
    finally:
        METHODS.pop('parallel_adapter', None)
        sys.modules.pop('parallel_adapter', None)
    with open(osp.join(out, 'comparison.csv')) as file:
        rows = list(csv.DictReader(file))
    assert [(r['method'], r['prompts'], r['status']) for r in rows] == [
        ('parallel adapter', '0', 'trained')]
    run_dir = osp.dirname(osp.dirname(rows[0]['checkpoint']))
    assert float(rows[0]['accuracy']) == pytest.approx(
        validation_metric(osp.join(run_dir, 'train')), abs=0.01)
