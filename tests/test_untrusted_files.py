"""Checkpoints and task packages read as untrusted files: their configs
open no file or URL, timm names stay in timm's registry, broken headers,
deep JSON and files that are no checkpoint are errors naming the file, and
the tools end such input with one line and exit status 2. Tiny demo
models, CPU, no training."""
import json
import os.path as osp
import pickle
import re
import struct
import sys

import pytest
import timm
import torch
from mmengine.runner import load_checkpoint
from mmseg.registry import MODELS
from safetensors.torch import save_file as safetensors_save_file

from mmseg_cvpt.apis import MultiTaskModel, build_model, export_task
from mmseg_cvpt.apis.task_package import model_meta, save_file
from mmseg_cvpt.engine import CheckpointFileError, load_config
from mmseg_cvpt.engine.checkpoint_files import META_KEY, load_from_local
from mmseg_cvpt.engine.config_data import config_from_data
from mmseg_cvpt.engine.file_arguments import (DROP, FILE_ARGUMENTS, REFUSE,
                                              FileArgumentError,
                                              strip_file_arguments)
from mmseg_cvpt.models.families.timm_vit import TimmViT
from test_reliability import log_lines
from tiny_runs import DEMO_CFG, REPO, run_cli_in_process
from tool_loading import load_tool

pytestmark = pytest.mark.filterwarnings('ignore:pkg_resources is deprecated')

TIMM_CFG = osp.join(REPO, 'configs', 'cvpt',
                    'upernet_vittiny_dinov2_ade20k_demo.py')
LOSS = 'model.decode_head.loss_decode'


def make_package(config, folder, suffix):
    """The task package (``suffix``: '.pth' or '.safetensors') of the
    config's model as initialised from its shipped pretrained ViT."""
    cfg = load_config(config)
    model = build_model(cfg)
    model.init_weights()
    full = str(folder / 'full.pth')
    torch.save(dict(meta=model_meta(cfg, model),
                    state_dict=model.state_dict()), full)
    package = str(folder / f'task{suffix}')
    export_task(full, package)
    return package


@pytest.fixture(scope='module')
def packages(tmp_path_factory):
    """Task packages of the CVPT demo (mmseg's ViT) and of its timm twin."""
    made = {}
    for family, config in (('mmseg', DEMO_CFG), ('timm', TIMM_CFG)):
        for suffix in ('.pth', '.safetensors'):
            folder = tmp_path_factory.mktemp(f'{family}{suffix}')
            made[family, suffix] = make_package(config, folder, suffix)
    return made


def with_config(package, out, change):
    """``package`` written to ``out`` with ``change(cfg_dict)`` applied to
    its config (the CRC-32s of a safetensors file recomputed, as whoever
    crafts such a file would)."""
    content = load_from_local(package)
    cfg_dict = json.loads(content['meta']['cfg_dict'])
    change(cfg_dict)
    content['meta']['cfg_dict'] = json.dumps(cfg_dict)
    save_file(dict(meta=content['meta'], state_dict=content['state_dict']),
              str(out))
    return str(out)


def setting(dotted, value):
    """A change of the config dict: ``dotted`` (keys, list indices) set."""

    def change(cfg_dict):
        *parents, last = dotted.split('.')
        node = cfg_dict
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value

    return change


class CreatesWhenLoaded:
    """An object whose unpickling creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


def pickle_that_creates(marker, path):
    """A pickle file whose loading creates ``marker``."""
    with open(path, 'wb') as file:
        pickle.dump(CreatesWhenLoaded(marker), file)
    return str(path)


def load_with(client, package):
    if client == 'export_task':
        export_task(package, package + '.out.pth')
    else:
        MultiTaskModel(dict(task=package))


# ---- values that open files -------------------------------------------------
def test_the_class_weight_payloads_are_live(tmp_path, http_server):
    """Without our loaders between them and mmseg, the payloads of the
    tests below run and reach the server: mmseg's loss unpickles a
    class_weight file and fetches a class_weight URL when it is built."""
    marker = tmp_path / 'ran'
    weights = pickle_that_creates(marker, tmp_path / 'w.pkl')
    MODELS.build(dict(type='CrossEntropyLoss', class_weight=weights))
    assert marker.exists()
    url, requests = http_server
    with pytest.raises(Exception):  # the server answers 404
        MODELS.build(dict(type='CrossEntropyLoss',
                          class_weight=f'{url}/w.pkl'))
    assert requests == ['/w.pkl']


@pytest.mark.parametrize('client', ['export_task', 'MultiTaskModel'])
@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
@pytest.mark.parametrize('source', ['pickle', 'url'])
def test_class_weight_file_in_a_package_runs_nothing(
        packages, tmp_path, http_server, client, suffix, source):
    """A package whose loss class_weight names a local pickle or a URL is
    refused, naming the key and the value, before anything opens it: the
    pickle's marker stays absent, the server sees no request, nothing is
    written."""
    marker = tmp_path / 'ran'
    url, requests = http_server
    value = pickle_that_creates(marker, tmp_path / 'w.pkl') \
        if source == 'pickle' else f'{url}/w.pkl'
    poisoned = with_config(packages['mmseg', suffix], tmp_path / f'p{suffix}',
                           setting(f'{LOSS}.class_weight', value))
    message = f'{LOSS}.class_weight={value!r}, a file or URL'
    with pytest.raises(FileArgumentError, match=message.replace('.', r'\.')):
        load_with(client, poisoned)
    assert not marker.exists()
    assert requests == []
    assert not osp.exists(poisoned + '.out.pth')


@pytest.mark.parametrize('client', ['export_task', 'MultiTaskModel'])
def test_weights_files_in_a_package_are_dropped_with_a_warning(
        packages, tmp_path, http_server, client):
    """Weights files that the package's model does not need (a head's
    Pretrained init_cfg, the backbone's, the model's ``pretrained``) are
    dropped, with a warning naming them, and never requested; the package
    loads from its own tensors and base record."""
    url, requests = http_server
    package = packages['mmseg', '.pth']

    def change(cfg_dict):
        model = cfg_dict['model']
        model['pretrained'] = f'{url}/model.pth'
        model['backbone']['init_cfg'] = dict(
            type='Pretrained', checkpoint=f'{url}/vit.pth')
        model['decode_head']['init_cfg'] = [
            dict(type='Normal', std=0.01),
            dict(type='Pretrained', checkpoint=f'{url}/head.pth')]

    poisoned = with_config(package, tmp_path / 'p.pth', change)
    logged = log_lines(load_with, client, poisoned)
    assert requests == []
    warning = [line for line in logged if 'not opened' in line]
    for key in ('model.pretrained', 'model.backbone.init_cfg.checkpoint',
                'model.decode_head.init_cfg.1.checkpoint'):
        assert key in warning[0]
    cfg = config_from_data(load_from_local(poisoned)['meta']['cfg_dict'],
                           poisoned)
    assert 'pretrained' not in cfg.model
    assert 'init_cfg' not in cfg.model.backbone
    assert cfg.model.decode_head.init_cfg == [dict(type='Normal', std=0.01)]


def test_shipped_configs_file_arguments_have_decisions():
    """tools/analysis/file_arguments.py probes every argument that can hold
    a string, of every module the shipped configs build: those that open a
    file or URL are exactly these, each with a decision in FILE_ARGUMENTS.
    A new one fails here until it gets a decision."""
    tool = load_tool('analysis/file_arguments.py')
    found = tool.find_file_arguments(tool.shipped_configs())
    assert found == {
        ('CrossEntropyLoss', 'class_weight'): {'file', 'url'},
        ('Pretrained', 'checkpoint'): {'file', 'url'},
        ('TimmViT', 'checkpoint'): {'file', 'url'},
    }
    assert {argument: FILE_ARGUMENTS[argument] for _, argument in found} == \
        dict(class_weight=REFUSE, checkpoint=DROP)


# ---- timm names -------------------------------------------------------------
def online_at(url, monkeypatch):
    """Make this process's Hugging Face Hub ``url``, online: the
    environment (``HF_ENDPOINT`` set, ``HF_HUB_OFFLINE`` unset) and what
    huggingface_hub read from it at import."""
    from huggingface_hub import constants
    monkeypatch.setenv('HF_ENDPOINT', url)
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.setattr(constants, 'ENDPOINT', url)
    monkeypatch.setattr(constants, 'HUGGINGFACE_CO_URL_TEMPLATE',
                        url + '/{repo_id}/resolve/{revision}/{filename}')
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)


def test_hf_hub_timm_name_in_a_package_is_refused(packages, tmp_path,
                                                  http_server, monkeypatch):
    """A package naming ``hf-hub:ORG/NAME`` is refused by name, by
    tools/export_task.py and MultiTaskModel, in this process with its Hub
    made the local server and online: no request. timm itself, in the same
    process, fetches the model's config.json from that server (so the Hub
    is that server indeed)."""
    url, requests = http_server
    poisoned = with_config(packages['timm', '.safetensors'],
                           tmp_path / 'p.safetensors',
                           setting('model.backbone.vit.model_name',
                                   'hf-hub:org/name'))
    refused = ("model_name='hf-hub:org/name' names a model outside timm's "
               'registry (hf-hub:)')
    online_at(url, monkeypatch)
    status, out = run_cli_in_process('export_task.py', [
        poisoned, '--out', str(tmp_path / 'out.pth')])
    assert status == 2
    assert f'export_task.py: error: TimmViT: {refused}' in out
    with pytest.raises(ValueError, match=re.escape(refused)):
        MultiTaskModel(dict(task=poisoned))
    assert requests == []
    with pytest.raises(Exception):  # the server answers 404
        timm.create_model('hf-hub:org/name', pretrained=False)
    assert '/org/name/resolve/main/config.json' in requests


@pytest.mark.parametrize('name', ['hf-hub:org/name', 'hf_hub:org/name',
                                  'local-dir:/tmp/model', 'http://x/y'])
def test_timm_names_beyond_the_registry_are_refused(name):
    with pytest.raises(ValueError, match="outside timm's registry"):
        TimmViT(model_name=name)


@pytest.mark.parametrize('kwargs', [dict(pretrained=True),
                                    dict(checkpoint_path='/tmp/w.pth'),
                                    dict(pretrained_cfg_overlay=dict(
                                        file='/tmp/w.pth'))])
def test_timm_weight_sources_are_refused(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f'through timm \\({name}='):
        TimmViT(model_name='vit_tiny_patch16_224', **kwargs)


# ---- broken files -----------------------------------------------------------
@pytest.mark.parametrize('length,problem', [
    (2**40, 'larger than the 100 MB safetensors reads'),
    (-5, 'negative'),
    (1000, r'past the end of the file \(28 bytes\)'),
])
def test_broken_safetensors_header_is_refused_naming_the_file(
        tmp_path, length, problem):
    path = tmp_path / 'broken.safetensors'
    path.write_bytes(struct.pack('<q', length) + b'{"__metadata__": {}}')
    message = f'{path}: not a readable safetensors file .* {problem}'
    with pytest.raises(CheckpointFileError, match=message):
        export_task(str(path), str(tmp_path / 'out.pth'))
    with pytest.raises(CheckpointFileError, match=message):
        load_checkpoint(torch.nn.Linear(1, 1), str(path))


def test_deep_json_is_refused_naming_the_file(packages, tmp_path):
    """Meta and config JSON nested 100,000 deep: an error naming the file
    (Python's parser would raise RecursionError)."""
    deep = '[' * 100_000 + ']' * 100_000
    meta = tmp_path / 'meta.safetensors'
    safetensors_save_file(dict(w=torch.zeros(1)), str(meta),
                          metadata={META_KEY: deep})
    with pytest.raises(CheckpointFileError,
                       match=f'{meta}: not a readable .*JSON nested 100000'):
        export_task(str(meta), str(tmp_path / 'out.pth'))
    content = torch.load(packages['mmseg', '.pth'])
    content['meta']['cfg_dict'] = deep
    config = tmp_path / 'config.pth'
    torch.save(content, config)
    with pytest.raises(ValueError,
                       match=f'{config}: meta.cfg_dict .*JSON nested 100000'):
        MultiTaskModel(dict(task=str(config)))


def test_files_that_are_no_checkpoint_are_named(tmp_path):
    """A text file is not a checkpoint; a pickle of code is refused
    without torch's advice to load it unsafely (weights_only=False)."""
    text = tmp_path / 'notes.pth'
    text.write_text('hello\n')
    with pytest.raises(CheckpointFileError,
                       match=f'{text} is not a checkpoint or task package'):
        export_task(str(text), str(tmp_path / 'out.pth'))
    code = tmp_path / 'code.pth'
    torch.save(dict(state_dict=CreatesWhenLoaded(tmp_path / 'ran')), code)
    with pytest.raises(CheckpointFileError) as error:
        MultiTaskModel(dict(task=str(code)))
    assert f'{code} is not loaded: it holds Python objects' in \
        str(error.value)
    assert 'weights_only' not in str(error.value)
    assert not (tmp_path / 'ran').exists()


# ---- the tools: one line, exit status 2 -------------------------------------
def run_tool_main(monkeypatch, capsys, tool, argv):
    """Run ``tools/<tool>`` as its ``__main__`` does, in this process:
    ``(exit status, stderr)``."""
    module = load_tool(tool)
    monkeypatch.setattr(sys, 'argv', [osp.basename(tool)] + argv)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        module.run_tool(module.main)
    return exit_.value.code, capsys.readouterr().err


def test_export_tool_says_a_text_file_is_no_checkpoint(tmp_path, monkeypatch,
                                                       capsys):
    text = tmp_path / 'notes.txt'
    text.write_text('not a checkpoint\n')
    argv = [str(text), '--out', str(tmp_path / 'out.pth')]
    status, err = run_tool_main(monkeypatch, capsys, 'export_task.py', argv)
    assert status == 2
    assert err == (f'export_task.py: error: {text} is not a checkpoint or '
                   'task package (neither a torch.save file nor '
                   'safetensors); give the path of one\n')
    with pytest.raises(CheckpointFileError):  # --debug: the traceback
        run_tool_main(monkeypatch, capsys, 'export_task.py',
                      argv + ['--debug'])


def test_tools_end_bad_configs_with_one_line(tmp_path, monkeypatch, capsys):
    """A config that does not exist, and one that names an unknown type:
    one line, status 2, for the test tool and the parameter counter."""
    missing = str(tmp_path / 'missing.py')
    status, err = run_tool_main(monkeypatch, capsys, 'test.py',
                                [missing, str(tmp_path / 'x.pth')])
    assert (status, err) == (
        2, f'test.py: error: config file not found: {missing}\n')
    bad = tmp_path / 'bad.py'
    bad.write_text(f'_base_ = [{DEMO_CFG!r}]\n'
                   "model = dict(backbone=dict(type='NoSuchViT'))\n")
    status, err = run_tool_main(monkeypatch, capsys,
                                'analysis/count_params.py', [str(bad)])
    assert status == 2 and err.count('\n') == 1
    assert err.startswith('count_params.py: error: ') and 'NoSuchViT' in err


def test_json_depth_limit_reads_ordinary_configs(packages):
    """The depth limit leaves real configs alone: the packages' configs
    read back whole."""
    for package in packages.values():
        text = load_from_local(package)['meta']['cfg_dict']
        assert config_from_data(text, package).model.type == 'EncoderDecoder'


def test_weights_files_are_dropped_wherever_they_sit():
    """Every string of a listed key goes, in dicts, lists and tuples; an
    init_cfg goes with its checkpoint (only that one of a list); the
    other values stay."""
    cfg = dict(model=dict(
        pretrained='x.pth',
        backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='a.pth'),
                      vit=dict(type='TimmViT', checkpoint='b.pth',
                               model_name='vit_small_patch14_dinov2')),
        decode_head=dict(init_cfg=(dict(type='Normal', std=0.01),
                                   dict(type='Pretrained', checkpoint='c'))),
        auxiliary_head=[dict(init_cfg=[
            dict(type='Pretrained', checkpoint='d'), dict(type='Normal')])]))
    dropped = strip_file_arguments(cfg, 'source')
    assert dropped == [
        'model.pretrained', 'model.backbone.init_cfg.checkpoint',
        'model.backbone.vit.checkpoint',
        'model.decode_head.init_cfg.1.checkpoint',
        'model.auxiliary_head.0.init_cfg.0.checkpoint']
    assert cfg == dict(model=dict(
        backbone=dict(vit=dict(type='TimmViT',
                               model_name='vit_small_patch14_dinov2')),
        decode_head=dict(init_cfg=(dict(type='Normal', std=0.01), )),
        auxiliary_head=[dict(init_cfg=[dict(type='Normal')])]))
