"""Runs of the tools in processes of their own, without an interpreter
start each (tools/analysis/compare_methods.py's runs).

A run is a spec file (JSON: ``steps``, the tools' command lines, e.g.
``python tools/train.py ...`` then ``python tools/test.py ...`` on
:data:`LAST_CHECKPOINT`; ``logs``, one per step; ``train_dir``). A
:class:`RunStarter` is a child process that imports the tools' stack once
(about 7 s on a CPU) and forks a process per run from it: each run starts
as if in a fresh interpreter, with its own memory, its own peak resident
set and the caller's environment of the moment. Starters are kept for the
next runs of the process while its environment stays as it was at their
start, but for :data:`RUN_TIME_VARIABLES`.
"""
import gc
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import threading
from typing import List

from .checkpoint import write_atomic
from .cli import run_as_command

#: in a step's command: the checkpoint the training step wrote last
LAST_CHECKPOINT = '<the checkpoint the training wrote last>'

#: environment variables that no import reads, which a starter passes on
#: to its runs as they are at each run: pytest's name of the running test
RUN_TIME_VARIABLES = frozenset({'PYTEST_CURRENT_TEST'})


def start_environment() -> dict:
    """The environment as an interpreter's start and imports read it."""
    return {key: value for key, value in os.environ.items()
            if key not in RUN_TIME_VARIABLES}


def last_checkpoint(train_dir: str) -> str:
    with open(osp.join(train_dir, 'last_checkpoint')) as file:
        return file.read().strip()


def run_steps(spec: str) -> int:
    """A run's process: each step as its command line runs it, in this
    interpreter, its output to its log (file descriptors 1 and 2); after
    each, the process's peak resident set (KiB) added to the spec's
    ``peaks_kib``. The first failing step's status ends it."""
    with open(spec) as file:
        todo = json.load(file)
    todo['peaks_kib'] = []
    for argv, log in zip(todo['steps'], todo['logs']):
        argv = [last_checkpoint(todo['train_dir']) if a == LAST_CHECKPOINT
                else a for a in argv[1:]]  # argv[0]: the interpreter
        sys.stdout.flush()
        sys.stderr.flush()
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        code = run_as_command(argv)
        sys.stdout.flush()
        sys.stderr.flush()
        if code:
            return code
        todo['peaks_kib'].append(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        write_atomic(json.dumps(todo).encode(), spec)
    return 0


def serve_runs() -> int:
    """The :class:`RunStarter` process: per request line (``spec``,
    ``threads``, ``cwd``, ``environment``), fork; the forked process runs
    :func:`run_steps` with that many CPU threads in that environment;
    answer its exit status."""
    import mmengine.runner  # noqa: F401  (the tools' stack, imported once)
    import torch

    import mmseg_cvpt  # noqa: F401

    # The imports never become garbage: frozen, the runs' collections (a
    # full one per data set mmengine builds) pass them over.
    gc.freeze()
    while True:
        line = sys.stdin.readline()
        if not line:  # the parent is done (or gone)
            return 0
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the run: its output to its logs, never to the pipe
            code = 1
            try:
                devnull = os.open(os.devnull, os.O_RDWR)
                os.dup2(devnull, 0)
                os.dup2(devnull, 1)
                os.chdir(request['cwd'])
                os.environ.clear()
                os.environ.update(request['environment'])
                threads = request['threads']
                os.environ.update(OMP_NUM_THREADS=str(threads),
                                  MKL_NUM_THREADS=str(threads))
                torch.set_num_threads(threads)
                code = run_steps(request['spec'])
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(json.dumps(dict(code=os.waitstatus_to_exitcode(status))),
              flush=True)


class RunStarter:
    """The parent's end of a :func:`serve_runs` process (one run at a
    time), started with the parent's environment of now."""

    def __init__(self):
        self.environment = start_environment()
        self.process = subprocess.Popen(
            [sys.executable, '-m', __name__], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def usable(self) -> bool:
        """Running, and started with the environment the parent has now
        (``PYTHONPATH`` and the like apply at an interpreter's start)."""
        return self.running and self.environment == start_environment()

    def run(self, spec: str, threads: int, cwd: str) -> int:
        self.process.stdin.write(json.dumps(
            dict(spec=spec, threads=threads, cwd=cwd,
                 environment=dict(os.environ))) + '\n')
        self.process.stdin.flush()
        reply = self.process.stdout.readline()
        if not reply:
            raise RuntimeError(
                'the process that starts the runs ended with exit status '
                f'{self.process.wait()} (its output is above)')
        return json.loads(reply)['code']


class _IdleStarters:
    """Starters between runs, those of another environment too (the
    parent may go back to it; each ends with the parent, at the end of its
    input)."""

    def __init__(self):
        self.starters: List[RunStarter] = []
        self.lock = threading.Lock()

    def take(self) -> RunStarter:
        """A usable idle starter, or a new one."""
        with self.lock:
            self.starters = [s for s in self.starters if s.running]
            for starter in reversed(self.starters):
                if starter.usable:
                    self.starters.remove(starter)
                    return starter
        return RunStarter()

    def give_back(self, starter: RunStarter) -> None:
        with self.lock:
            self.starters.append(starter)


_IDLE = _IdleStarters()


def run_in_own_process(spec: str, threads: int, cwd: str) -> int:
    """The exit status of the run ``spec`` (see the module docstring), in a
    process of its own with ``threads`` CPU threads, in folder ``cwd``,
    forked by an idle starter (one per run going on at a time)."""
    starter = _IDLE.take()
    try:
        return starter.run(spec, threads, cwd)
    finally:
        _IDLE.give_back(starter)


if __name__ == '__main__':
    sys.exit(serve_runs())
