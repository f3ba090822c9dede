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
four mmseg bases reads in 0.3 s instead of 2.

Importing ``mmseg_cvpt`` imports this module. Scripts must therefore import
``mmseg_cvpt`` before ``Config.fromfile`` reads a config that inherits ours
(a config's own ``custom_imports`` come too late: they are imported after its
bases are resolved).
"""
import copy
import functools

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


register_config_scope()
cache_config_lookups()
