"""One training per work dir: a lock that the live training holds.

``work_dir/.train.lock`` is locked with ``fcntl.lockf`` (a POSIX record
lock, which NFS's lock manager honours across hosts) and holds the holder's
PID, host, start time and command. The kernel releases the lock when the
holder dies, however it dies (``kill -9`` included), and record locks are
not inherited by forked data loader workers: a lock that can be taken is
free, whatever the file says. A file that still names a holder was left by
a training that ended without clearing it (killed): it is taken over with a
warning. No PID or age has to be guessed at, on this host or another.
"""
import fcntl
import json
import logging
import os
import os.path as osp
import signal
import socket
import sys
import time
from contextlib import ExitStack, contextmanager

from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.logging import print_log

LOCK_NAME = '.train.lock'


class WorkDirBusyError(RuntimeError):
    """Another live training holds the work dir's lock."""


def _holder(record: str) -> str:
    """'PID 123 on host h, started T: command' from a lock file's text."""
    try:
        holder = json.loads(record)
        return (f'PID {holder["pid"]} on host {holder["host"]}, started '
                f'{holder["started"]}: {holder["command"]}')
    except (ValueError, TypeError, KeyError):
        return f'unreadable record {record[:200]!r}'


@contextmanager
def _sigterm_exits():
    """SIGTERM raises SystemExit(143), so that ``finally`` blocks run."""

    def exit_(signum, frame):
        sys.exit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def work_dir_lock(work_dir: str):
    """Hold ``work_dir/.train.lock`` while the block runs.

    Raises :class:`WorkDirBusyError` naming the holder if a live process
    holds it. The lock is cleared when the block ends, by an exception or
    SIGTERM too.
    """
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_NAME)
    with open(os.open(path, os.O_RDWR | os.O_CREAT, 0o666), 'r+') as lock:
        try:
            fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            raise WorkDirBusyError(
                f'{work_dir} is in use by another training ({path}: '
                f'{_holder(lock.read())}). Wait for it to end or stop it, or '
                'train in another --work-dir') from None
        stale = lock.read()
        if stale.strip():
            print_log(
                f'Taking over the stale lock {path} ({_holder(stale)}): '
                'that training ended without releasing it (killed?).',
                logger='current',
                level=logging.WARNING)
        lock.seek(0)
        lock.truncate()
        json.dump(
            dict(pid=os.getpid(), host=socket.gethostname(),
                 started=time.strftime('%Y-%m-%d %H:%M:%S'),
                 command=' '.join(sys.argv)), lock)
        lock.flush()
        try:
            with _sigterm_exits():
                yield
        finally:
            lock.truncate(0)


@contextmanager
def train_lock(work_dir: str):
    """:func:`work_dir_lock` for a (distributed) training: rank 0 takes it,
    and if it is busy every rank raises the error. Call it once the process
    group exists."""
    with ExitStack() as stack:
        error = [None]
        if is_main_process():
            try:
                stack.enter_context(work_dir_lock(work_dir))
            except WorkDirBusyError as busy:
                error = [str(busy)]
        broadcast_object_list(error)
        if error[0] is not None:
            raise WorkDirBusyError(error[0])
        yield
