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
'atomic_local')``; :class:`~.hooks.AtomicCheckpointHook` does so and writes
``last_checkpoint`` atomically too.

A run killed while writing leaves the temporary file behind;
:func:`remove_stale_temporaries` removes such files, and
:func:`find_resume_checkpoint` finds what to resume from even when
``last_checkpoint`` is missing, empty or names a file that is gone.

Every read of a local checkpoint file checks it (the zip's CRC-32s, see
:mod:`.checkpoint_files`): a damaged checkpoint is an error naming its
damaged entries and tensors, never loaded as it is; ``--resume`` passes
over it (:func:`is_intact`) to the newest intact one, with a warning.
"""
import glob
import io
import logging
import os
import os.path as osp
import pickle
import re
import tempfile
import zipfile
from collections import OrderedDict
from contextlib import contextmanager
from typing import List, Optional, Union

import numpy as np
import torch
from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging import HistoryBuffer, print_log

from .checkpoint_files import CheckpointFileError, check_zip


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


class _AtomicTextFile(io.StringIO):
    """A text file that is written with :func:`write_atomic` when closed."""

    def __init__(self, filepath: str) -> None:
        super().__init__()
        self.filepath = filepath

    def close(self) -> None:
        if not self.closed:
            write_atomic(self.getvalue().encode('utf-8'), self.filepath)
        super().close()


@contextmanager
def atomic_text_writes(module):
    """Make ``open(path, 'w')`` in ``module``'s code write atomically.

    For third-party code that rewrites a small text file in place
    (mmengine's ``CheckpointHook`` and ``last_checkpoint``); other modes
    open files as usual. Only while the block runs.
    """

    def atomic_open(file, mode='r', *args, **kwargs):
        if mode == 'w':
            return _AtomicTextFile(file)
        return open(file, mode, *args, **kwargs)

    module.open = atomic_open
    try:
        yield
    finally:
        del module.open


# write_atomic's temporary files: '.<name>.<8 characters of mkstemp>.tmp'
_TEMPORARY = re.compile(r'^\..+\.[A-Za-z0-9_]{8}\.tmp$')


def remove_stale_temporaries(folder: str) -> List[str]:
    """Remove the temporary files of interrupted atomic writes in
    ``folder``; return their paths. Call it before anything writes there."""
    stale = sorted(
        path for path in glob.glob(osp.join(glob.escape(folder), '.*.tmp'))
        if _TEMPORARY.match(osp.basename(path)) and osp.isfile(path))
    for path in stale:
        os.remove(path)
    return stale


_CHECKPOINT = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')


def is_intact(path: str) -> bool:
    """Whether ``path`` is a complete, undamaged checkpoint file.

    ``torch.save`` writes a zip archive, whose directory is at its end: a
    truncated file has none; a damaged entry fails its CRC-32
    (:func:`~.checkpoint_files.check_zip`, as every load checks).
    """
    if not (osp.isfile(path) and zipfile.is_zipfile(path)):
        return False
    try:
        check_zip(path)
    except CheckpointFileError:
        return False
    return True


def _numbered_checkpoints(work_dir: str) -> List[str]:
    """``iter_N.pth`` / ``epoch_N.pth`` of ``work_dir``, by increasing N."""
    found = []
    for name in os.listdir(work_dir) if osp.isdir(work_dir) else []:
        match = _CHECKPOINT.match(name)
        if match:
            found.append((int(match.group(1)), osp.join(work_dir, name)))
    return [path for _, path in sorted(found)]


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` continues from.

    The one ``work_dir/last_checkpoint`` names when it is intact and in
    ``work_dir``; otherwise (the file is missing, empty, names a file that
    is gone or truncated, or one outside ``work_dir``, as in a copied work
    dir) the intact ``iter_N.pth`` / ``epoch_N.pth`` of ``work_dir`` with the
    largest N, with a warning that names it. None if there is none.
    """
    last_file = osp.join(work_dir, 'last_checkpoint')
    named = ''
    if osp.isfile(last_file):
        with open(last_file) as f:
            named = f.read().strip()
    inside = named and osp.dirname(osp.realpath(named)) == osp.realpath(
        work_dir)
    if inside and is_intact(named):
        return named
    intact = [p for p in _numbered_checkpoints(work_dir) if is_intact(p)]
    if not intact:
        return None
    why = (f'names {named}, outside {work_dir} (a copied work dir? To '
           'continue from that file: --resume --cfg-options load_from=PATH)'
           if named and not inside else
           f'names {named}, which is missing, truncated or damaged'
           if named else
           'is empty' if osp.isfile(last_file) else 'does not exist')
    print_log(
        f'{last_file} {why}: resuming from the newest intact checkpoint, '
        f'{intact[-1]}.',
        logger='current',
        level=logging.WARNING)
    return intact[-1]


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
