"""Make ``mmseg_cvpt::`` config paths resolvable by mmengine, and resolve
every ``scope::`` path without re-reading the scope's metafiles.

A config anywhere on disk can then inherit ours::

    _base_ = ['mmseg_cvpt::cvpt/upernet_vitb_ade20k.py']

mmengine 0.10.7 resolves ``scope::path`` only for the scopes listed in
``mmengine.config.utils.MODULE2PACKAGE``; the entry names a package, whose
folder it finds with ``mmengine.utils.get_installed_path`` and in which it
reads ``.mim/model-index.yml`` (a list of metafiles; ours lists none) and
then ``.mim/configs/<path>``. ``setup.py`` places ``configs/`` (a link in an
editable install, a copy otherwise) and ``model-index.yml`` under
``mmseg_cvpt/.mim``.

The entry names this module rather than the distribution: for a
distribution, ``get_installed_path`` answers ``site-packages/mmseg_cvpt``
even when an editable install lives elsewhere, while for a name that is no
distribution it falls back to ``importlib``, i.e. to the folder this very
package is imported from, however it was installed (or put on
``PYTHONPATH``).

For every ``scope::`` base, mmengine parses all of the scope's metafiles
(mmseg: 212 YAML files, 0.4 s) to look the path up among its models' configs,
then falls back to ``.mim/configs/<path>`` for a base config. The installed
metafiles do not change while a process runs, so each (package, path) is
looked up once per process (:func:`cache_config_lookups`): a config with
four mmseg bases reads in 0.3 s instead of 2. Likewise mmengine asks
whether the scope's package is installed by reloading ``pkg_resources``
(0.14 s) for every base (:func:`cache_installed_packages` remembers a yes),
and ``Config.pretty_text`` formats the whole config with yapf (1 s for the
demo configs) each time a run logs it, dumps it, hands it to its visualizer
and message hub and saves a checkpoint: five times the same text in a short
run. yapf's ``FormatCode`` is a function of its arguments only, and
:func:`cache_config_formatting` remembers its answers for recent texts.
And mmengine reads every base of a config again for each config that
inherits it; :func:`cache_config_files` remembers what each file read,
while its bytes and its bases' stay the same.

Importing ``mmseg_cvpt`` imports this module. Scripts must therefore import
``mmseg_cvpt`` before ``Config.fromfile`` reads a config that inherits ours
(a config's own ``custom_imports`` come too late: they are imported after its
bases are resolved).
"""
import copy
import functools
import hashlib
import os
import threading

import mmengine.config.config as config_module
import mmengine.config.utils as config_utils
from mmengine.config.utils import MODULE2PACKAGE

#: the scope used in ``_base_`` paths
SCOPE = 'mmseg_cvpt'


def register_config_scope() -> None:
    """Add ``mmseg_cvpt`` to mmengine's table of config packages."""
    MODULE2PACKAGE[SCOPE] = __name__


def cache_config_lookups() -> None:
    """Remember mmengine's metafile lookup of each ``scope::`` path (its
    answer, or the ValueError that sends mmengine to the base configs)."""
    lookup = config_utils._get_cfg_metainfo
    if hasattr(lookup, 'cache_info'):  # cached already
        return

    @functools.lru_cache(maxsize=None)
    def answer(package_path: str, cfg_path: str):
        try:
            return lookup(package_path, cfg_path), None
        except ValueError as error:
            return None, str(error)

    def cached_lookup(package_path: str, cfg_path: str) -> dict:
        info, error = answer(package_path, cfg_path)
        if error is not None:
            raise ValueError(error)
        return copy.deepcopy(info)

    cached_lookup.cache_info = answer.cache_info
    config_utils._get_cfg_metainfo = cached_lookup


def cache_installed_packages() -> None:
    """Remember which packages mmengine's config reader found installed (a
    package not found is asked again)."""
    is_installed = config_module.is_installed
    if hasattr(is_installed, 'found'):  # cached already
        return
    found = set()

    def cached_is_installed(package: str) -> bool:
        if package not in found and is_installed(package):
            found.add(package)
        return package in found

    cached_is_installed.found = found
    config_module.is_installed = cached_is_installed


def cache_config_formatting() -> None:
    """Remember yapf's formatting of the recent config texts of
    ``Config.pretty_text`` (the same text, formatted once)."""
    format_code = config_module.FormatCode
    if hasattr(format_code, 'cache_info'):  # cached already
        return

    @functools.lru_cache(maxsize=16)
    def formatted(text: str, style: tuple, options: tuple):
        return format_code(text, style_config=dict(style), **dict(options))

    def cached_format_code(text: str, style_config: dict, **options):
        return formatted(text, tuple(sorted(style_config.items())),
                         tuple(sorted(options.items())))

    cached_format_code.cache_info = formatted.cache_info
    config_module.FormatCode = cached_format_code


def cache_config_files() -> None:
    """Remember what mmengine read from each config file (``_file2dict``:
    the file with its bases merged), while neither the file nor any of its
    bases has changed on disk (their bytes) and the environment
    (``{{$ENV:...}}`` values) is the one it was read in: a config that
    shares its bases with one read before reads in a fifth of the time.
    Callers get copies (mmengine merges into what it gets)."""
    file2dict = config_module.Config._file2dict
    if hasattr(file2dict, 'cache'):  # cached already
        return
    cache, reading = {}, threading.local()

    def stamp(path: str) -> bytes:
        with open(path, 'rb') as file:
            return hashlib.sha256(file.read()).digest()

    def cached_file2dict(filename, *args, **kwargs):
        path = os.path.abspath(filename)
        key = (path, args, tuple(sorted(kwargs.items())),
               hash(frozenset(os.environ.items())))
        parents = getattr(reading, 'files', None)
        hit = cache.get(key)
        if hit is not None and all(stamp(f) == s for f, s in hit[0].items()):
            if parents is not None:
                parents.update(hit[0])
            return copy.deepcopy(hit[1])
        reading.files = {path: stamp(path)}
        try:
            result = file2dict(filename, *args, **kwargs)
            files = reading.files
        finally:
            reading.files = parents
        cache[key] = files, copy.deepcopy(result)
        if parents is not None:
            parents.update(files)
        return result

    cached_file2dict.cache = cache
    config_module.Config._file2dict = staticmethod(cached_file2dict)


register_config_scope()
cache_config_lookups()
cache_installed_packages()
cache_config_formatting()
cache_config_files()
