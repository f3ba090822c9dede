"""Make ``mmseg_cvpt::`` config paths resolvable by mmengine.

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

Importing ``mmseg_cvpt`` imports this module. Scripts must therefore import
``mmseg_cvpt`` before ``Config.fromfile`` reads a config that inherits ours
(a config's own ``custom_imports`` come too late: they are imported after its
bases are resolved).
"""
from mmengine.config.utils import MODULE2PACKAGE

#: the scope used in ``_base_`` paths
SCOPE = 'mmseg_cvpt'


def register_config_scope() -> None:
    """Add ``mmseg_cvpt`` to mmengine's table of config packages."""
    MODULE2PACKAGE[SCOPE] = __name__


register_config_scope()
