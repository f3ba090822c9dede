"""Runner checkpoints on torch >= 2.6: safe loading and atomic writing.

torch >= 2.6 unpickles with ``weights_only=True`` by default and mmengine
0.10.7 does not pass ``weights_only=False``, so resuming a runner checkpoint
fails on the objects it holds besides tensors ("Unsupported global ...
HistoryBuffer"). Rather than unpickling arbitrary code again, the few classes
a runner checkpoint is made of are added to torch's allow-list; loading stays
``weights_only``.

mmengine writes a checkpoint in place (``open(path, 'wb')``): a run killed
while saving leaves a truncated file that ``last_checkpoint`` points to.
:class:`AtomicLocalBackend` writes to a temporary file in the same folder and
renames it over the target, so a checkpoint is either complete or absent.
Use it with ``default_hooks.checkpoint.backend_args=dict(backend=
'atomic_local')``.
"""
import os
import os.path as osp
import pickle
import tempfile
from collections import OrderedDict
from typing import Union

import numpy as np
import torch
from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging import HistoryBuffer


def _numpy_globals():
    """numpy objects that pickled arrays, dtypes and scalars refer to.

    ``_reconstruct`` and ``scalar`` live in ``numpy.core.multiarray`` under
    numpy 1.x and in ``numpy._core.multiarray`` under numpy 2.x; both names
    are allowed so that checkpoints load under either version.
    """
    core = getattr(np, '_core', None) or np.core
    globals_ = [np.ndarray, np.dtype]
    for fn in (core.multiarray._reconstruct, core.multiarray.scalar):
        for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            globals_.append((fn, f'{module}.{fn.__name__}'))
    # numpy >= 1.25: the unpickler sets the state of a dtype, whose type is
    # then one of the classes of numpy.dtypes (Float64DType, ...)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        globals_ += [
            cls for cls in vars(dtypes).values()
            if isinstance(cls, type) and issubclass(cls, np.dtype)
        ]
    return globals_


# the statistics every HistoryBuffer has (others are registered at run time)
_HISTORY_BUFFER_STATISTICS = frozenset(('min', 'max', 'current', 'mean'))


def _history_buffer_method(obj, name: str):
    """``getattr`` restricted to HistoryBuffer's statistics methods.

    A pickled HistoryBuffer keeps its statistics methods (``min``, ``mean``,
    ...), which protocol 2 stores as ``getattr(HistoryBuffer, 'min')``.
    Allow-listing ``builtins.getattr`` itself would let a checkpoint reach
    any attribute of any allowed object; this stand-in, registered under
    that name, resolves only those methods.
    """
    registered = _HISTORY_BUFFER_STATISTICS.union(
        HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in registered:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'weights_only load: refusing getattr({obj!r}, {name!r}); only the '
        'statistics methods of mmengine\'s HistoryBuffer are allowed')


def allow_runner_checkpoint_globals():
    """Allow-list what an mmengine runner checkpoint is made of.

    Besides tensors and builtins a runner checkpoint holds the message
    hub's :class:`~mmengine.logging.HistoryBuffer` objects (with their
    statistics methods), ordered dicts, and numpy arrays and scalars
    (history buffers).
    Safe to call several times.
    """
    if not hasattr(torch.serialization, 'add_safe_globals'):
        return  # torch < 2.4 does not unpickle weights only by default
    torch.serialization.add_safe_globals([
        HistoryBuffer, OrderedDict, (_history_buffer_method,
                                     'builtins.getattr'), *_numpy_globals()
    ])


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_atomic(data: bytes, filepath: Union[str, os.PathLike]) -> None:
    """Write ``data`` to a temporary file next to ``filepath``, flush it to
    disk and rename it over ``filepath``: the file is complete or absent."""
    filepath = str(filepath)
    folder = osp.dirname(osp.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(
        dir=folder, prefix=f'.{osp.basename(filepath)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the usual permissions
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, filepath)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """Local file backend whose writes are atomic.

    Data go to a temporary file next to the target, are flushed to disk and
    the file is renamed over the target (``os.replace`` is atomic on POSIX
    and Windows within one file system).
    """

    def put(self, obj: bytes, filepath: Union[str, os.PathLike]) -> None:
        """Write ``obj`` to ``filepath`` atomically."""
        write_atomic(obj, filepath)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, os.PathLike],
                 encoding: str = 'utf-8') -> None:
        """Write the text ``obj`` to ``filepath`` atomically."""
        write_atomic(obj.encode(encoding), filepath)
