"""Configs stored in checkpoints as data, never as code.

A checkpoint's config (runner checkpoints, task packages) comes from a file
someone else may have written. mmengine stores it as Python text
(``meta['cfg']``), and ``Config.fromstring`` runs that text. We store the
config's plain dict as JSON (``meta['cfg_dict']``, tuples kept as
``{"__tuple__": [...]}``) and read only that; the text stays for display.

JSON cannot hold code, but a config names classes by their ``type``, and
mmengine's registries import any dotted name they do not hold (e.g.
``type='os.system'`` would run a command when built). A config read from a
checkpoint may therefore only name types and scopes that the registries
hold already, and its values open no file or URL (``.file_arguments``).
"""
import json
from typing import Iterator, Set, Tuple

from mmengine.config import Config
from mmengine.registry import Registry
from mmengine.registry import root as root_registries

from .. import json_data
from .config import iter_dicts
from .file_arguments import strip_file_arguments

#: where a checkpoint's meta keeps its config as data
CONFIG_DATA_KEY = 'cfg_dict'
TUPLE_KEY = '__tuple__'


def _encode(value, where: str):
    """``value`` with tuples as ``{TUPLE_KEY: [...]}``; non-data raises."""
    if isinstance(value, dict):
        bad = [key for key in value if not isinstance(key, str)]
        if bad:
            raise ValueError(f'config key {where}{bad[0]!r} is not a string')
        return {key: _encode(item, f'{where}{key}.')
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_encode(item, f'{where}{i}.') for i, item in enumerate(value)]
        return {TUPLE_KEY: items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise ValueError(f'config value {where.rstrip(".")} is a '
                     f'{type(value).__name__}, not data (str, number, bool, '
                     'None, list, tuple or dict)')


def _decode(obj: dict):
    return tuple(obj[TUPLE_KEY]) if set(obj) == {TUPLE_KEY} else obj


def config_to_data(cfg: Config) -> str:
    """The config's plain dict as JSON text (what ``config_from_data``
    reads back); a value that is not data raises ``ValueError``."""
    return json.dumps(_encode(cfg.to_dict(), ''))


def _registries() -> Iterator[Registry]:
    """mmengine's root registries and all their children, imported."""
    stack = [value for value in vars(root_registries).values()
             if isinstance(value, Registry)]
    while stack:
        registry = stack.pop()
        registry.import_from_location()
        yield registry
        stack.extend(registry.children.values())


def registered_names() -> Tuple[Set[str], Set[str]]:
    """``(types, scopes)``: every name the registries hold, plain and as
    ``scope.Name``, and every scope."""
    types, scopes = set(), set()
    for registry in _registries():
        scopes.add(registry.scope)
        for name in registry.module_dict:
            types.update((name, f'{registry.scope}.{name}'))
    return types, scopes


def unregistered_names(cfg_dict: dict) -> Set[str]:
    """The ``type``, ``_scope_`` and ``default_scope`` values of a config
    that name nothing the registries hold."""
    types, scopes = registered_names()
    found = set()
    for item in iter_dicts(cfg_dict):
        for key, known in (('type', types), ('_scope_', scopes),
                           ('default_scope', scopes)):
            value = item.get(key)
            if value is not None and (not isinstance(value, str)
                                      or value not in known):
                found.add(f'{key}={value!r}')
    return found


def config_from_data(text: str, source: str) -> Config:
    """The config of ``config_to_data``'s JSON text, read from ``source``
    (named in errors). Nothing in it runs: a config that names a type or
    scope no registry holds (mmengine would import it) is refused, and so
    is one whose model would open a file or URL when built; the weights
    files it names are dropped (``strip_file_arguments``)."""
    try:
        cfg_dict = json_data.loads(text, object_hook=_decode)
    except (TypeError, ValueError) as error:
        raise ValueError(f'{source}: meta.{CONFIG_DATA_KEY} is not a config '
                         f'as JSON ({error}); pass --config CONFIG') from error
    if not isinstance(cfg_dict, dict):
        raise ValueError(f'{source}: meta.{CONFIG_DATA_KEY} is not a config '
                         'dict; pass --config CONFIG')
    unknown = unregistered_names(cfg_dict)
    if unknown:
        raise ValueError(
            f'{source}: its config names {sorted(unknown)}, which no '
            'registry holds; they are not imported or run. Pass the config '
            'it was trained with (--config CONFIG)')
    strip_file_arguments(cfg_dict, source)
    return Config(cfg_dict)
