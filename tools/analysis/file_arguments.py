"""Find the config arguments that open a file or a URL.

Walks every typed dict of the ``model`` of each config (the shipped ones by
default) and probes every argument of its class that can hold a string (a
string in the config; or, left out of the config, a default that is a
string or None, or no default): the argument is set to the path of an
existing file, then to an ``http://`` URL, the module around it is built
from the registry and initialised (``init_weights``; the whole backbone for
the modules in it, whose weights the backbone loads), and Python's audit
events tell whether the path was opened or the URL requested. Errors of
the probed value itself (a path where a number belongs) are expected.

Prints a table of ``type.argument``, what it opened and the decision of
``mmseg_cvpt.engine.file_arguments.FILE_ARGUMENTS`` (a config read from a
checkpoint keeps none of these values); exit status 1 if one has none.

Example::

    python tools/analysis/file_arguments.py            # configs/**/*.py
    python tools/analysis/file_arguments.py configs/cvpt/upernet_vitb_ade20k.py
"""
import argparse
import copy
import glob
import inspect
import logging
import os.path as osp
import sys
import tempfile
import warnings
from collections import defaultdict
from typing import Dict, Iterator, List, Optional, Set, Tuple

from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import WEIGHT_INITIALIZERS, init_default_scope

import mmseg_cvpt  # noqa: F401  (registers our modules, mmseg_cvpt:: bases)
from mmseg_cvpt.datasets import resolve_task
from mmseg_cvpt.engine.cli import add_debug_argument, run_tool
from mmseg_cvpt.engine.file_arguments import FILE_ARGUMENTS

#: the task of classification configs (each task builds the same modules)
EXAMPLE_TASK = 'dtd'
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: a port nothing listens on: a request to it fails at once
CLOSED_ADDRESS = ('127.0.0.1', 9)
CLOSED_URL = 'http://{}:{}/'.format(*CLOSED_ADDRESS)

# mmengine re-imports the deprecated pkg_resources for every `pkg::` base
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')


class OpenedMarkers:
    """Which kinds of marker ('file', 'url') the audited operations named
    since :meth:`watch`: files opened by path, URLs requested, connections
    to the closed port of :data:`CLOSED_URL`."""

    def __init__(self):
        self.markers: Dict[str, str] = {}
        self.seen: Set[str] = set()
        sys.addaudithook(self._hook)  # for the process: idle when unwatched

    def watch(self, markers: Dict[str, str]) -> None:
        """Listen for ``markers`` (marker -> its kind)."""
        self.markers, self.seen = dict(markers), set()

    def _hook(self, event: str, args) -> None:
        if not self.markers:
            return
        if event in ('socket.connect', 'socket.getaddrinfo'):
            address = args[1] if event == 'socket.connect' else args[:2]
            if tuple(address) == CLOSED_ADDRESS:
                self.seen.add('url')
        elif event in ('open', 'urllib.Request'):
            self.seen.update(kind for marker, kind in self.markers.items()
                             if marker in str(args[0]))


def typed_dicts(cfg, path: Tuple = ()) -> Iterator[Tuple[Tuple, dict]]:
    """``(path, dict)`` of every dict with a ``type`` in a nested config."""
    if isinstance(cfg, dict):
        if isinstance(cfg.get('type'), str):
            yield path, cfg
        items = cfg.items()
    elif isinstance(cfg, (list, tuple)):
        items = enumerate(cfg)
    else:
        return
    for key, value in items:
        yield from typed_dicts(value, path + (key, ))


def class_of(registry, type_name: str, in_init_cfg: bool):
    """The class a typed dict builds (an initialiser inside init_cfg)."""
    found = (WEIGHT_INITIALIZERS if in_init_cfg else registry).get(type_name)
    return found or ROOT_MODELS.get(type_name)


def may_hold_a_string(parameter: inspect.Parameter, value) -> bool:
    """Whether an argument can hold a string: it does in the config, or
    the config leaves it out and its default is a string or None, or it
    has no default (a dict or list in the config is a sub-config)."""
    if isinstance(value, str):
        return True
    if parameter is None or value is not None:
        return False
    if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
        return False
    default = parameter.default
    return default is parameter.empty or default is None or \
        isinstance(default, str)


def string_arguments(cls, node: dict) -> List[str]:
    """The arguments of ``cls`` (as configured in ``node``) that can hold a
    string (see :func:`may_hold_a_string`)."""
    try:
        parameters = dict(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        parameters = {}
    names = set(parameters) | set(node)
    names -= {'self', 'type', '_scope_'}
    return sorted(name for name in names
                  if may_hold_a_string(parameters.get(name), node.get(name)))


def build_target(path: Tuple) -> Tuple:
    """The path of the dict to build for a probe at ``path``: the backbone
    (whose initialisation reads the weights of the modules in it, such as
    a family's ``checkpoint``), else the module that owns an ``init_cfg``,
    else the typed dict itself."""
    if 'backbone' in path:
        return path[:path.index('backbone') + 1]
    if 'init_cfg' in path:
        return path[:len(path) - 1 - path[::-1].index('init_cfg')]
    return path


def _at(cfg, path: Tuple):
    for key in path:
        cfg = cfg[key]
    return cfg


def probe(registry, model_cfg: dict, path: Tuple, argument: str,
          opened: OpenedMarkers, folder: str) -> Set[str]:
    """What ``argument`` of the typed dict at ``path`` opened: 'file',
    'url', both or neither."""
    found = set()
    for kind in ('file', 'url'):
        name = f'probe_{"_".join(map(str, path))}_{argument}.pkl'
        marker = osp.join(folder, name) if kind == 'file' else \
            CLOSED_URL + name
        if kind == 'file':
            open(marker, 'wb').close()
        cfg = copy.deepcopy(model_cfg)
        _at(cfg, path)[argument] = marker
        target = build_target(path)
        opened.watch({marker: kind})
        try:
            module = registry.build(_at(cfg, target))
            if isinstance(module, BaseModule):
                module.init_weights()
        except Exception:  # the probed value is no valid argument
            pass
        finally:
            found |= opened.seen
            opened.watch({})
    return found


def shipped_configs() -> List[str]:
    return sorted(glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                            recursive=True))


def find_file_arguments(configs: List[str]) -> Dict[Tuple[str, str], Set]:
    """``(type, argument) -> {'file', 'url'}`` for every argument of the
    configs' models that opened something; each type is probed once, in
    the first config that has it (tiny demo configs first: cheap builds)."""
    from mmseg.registry import MODELS as MMSEG_MODELS
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    registries = dict(mmseg=MMSEG_MODELS, mmpretrain=MMPRETRAIN_MODELS)
    opened, found, probed = OpenedMarkers(), defaultdict(set), set()
    logger = MMLogger.get_current_instance()
    level, logger.level = logger.level, logging.CRITICAL
    try:
        with tempfile.TemporaryDirectory() as folder:
            for config in sorted(configs, key=lambda c: 'demo' not in c):
                scope, model_cfg = model_of(config)
                if model_cfg is None:
                    continue
                for path, node in typed_dicts(model_cfg):
                    cls = class_of(registries[scope], node['type'],
                                   'init_cfg' in path)
                    if node['type'] in probed or cls is None:
                        continue
                    probed.add(node['type'])
                    for argument in string_arguments(cls, node):
                        kinds = probe(registries[scope], model_cfg, path,
                                      argument, opened, folder)
                        if kinds:
                            found[node['type'], argument] |= kinds
    finally:
        logger.level = level
    return dict(found)


def model_of(config: str) -> Tuple[str, Optional[dict]]:
    """``(default scope, model dict or None)`` of a config file, a
    classification config's for :data:`EXAMPLE_TASK`; the scope is made
    the default."""
    cfg = Config.fromfile(config)
    if 'task' in cfg:  # classification: the model has the task's classes
        cfg.task = EXAMPLE_TASK
        resolve_task(cfg)
    scope = cfg.get('default_scope', 'mmseg')
    init_default_scope(scope)
    return scope, cfg.model.to_dict() if 'model' in cfg else None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Find the config arguments that open a file or a URL')
    parser.add_argument('configs', nargs='*',
                        help='config files (default: configs/**/*.py)')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    found = find_file_arguments(args.configs or shipped_configs())
    print(f'{"argument":40} {"opens":10} decision')
    undecided = 0
    for (type_name, argument), kinds in sorted(found.items()):
        decision = FILE_ARGUMENTS.get(argument, 'NONE')
        undecided += decision == 'NONE'
        print(f'{type_name + "." + argument:40} '
              f'{"+".join(sorted(kinds)):10} {decision}')
    return 1 if undecided else 0


if __name__ == '__main__':
    run_tool(main)
