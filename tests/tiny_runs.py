"""Helpers for tests that run our tools as a user does, on tiny CPU runs.

The tools run as subprocesses from the repository root on a few synthetic
64x64 scenes of tools/misc/make_ade20k_demo.py with the demo config
(configs/cvpt/upernet_vittiny_ade20k_demo.py).
"""
import glob
import io
import json
import logging
import os
import os.path as osp
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import traceback
from contextlib import redirect_stderr, redirect_stdout

import pytest

from mmseg_cvpt.engine.cli import forget_visualizers, run_tool
from tool_loading import load_tool

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CFG = osp.join(REPO, 'configs', 'cvpt', 'upernet_vittiny_ade20k_demo.py')
CVPT_CFG = osp.join(REPO, 'configs', 'cvpt', 'upernet_vitb_ade20k.py')
VPT_CFG = osp.join(REPO, 'configs', 'vpt', 'upernet_vitb_ade20k.py')
BASELINE_CFG = osp.join(REPO, 'configs', 'baseline', 'upernet_vitb_ade20k.py')


# Hooks, imported by the test configs (``hook_module``), that save what
# each rank trained.
DUMP_HOOK = '''
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class DumpTrainableHook(Hook):
    """Save the trainable parameters of this rank before and after
    training to work_dir/rank{rank}.pth."""

    def _trainable(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        return {n: p.detach().clone() for n, p in model.named_parameters()
                if p.requires_grad}

    def before_train(self, runner):
        self.initial = self._trainable(runner)

    def after_train(self, runner):
        torch.save(dict(initial=self.initial, final=self._trainable(runner),
                        iter=runner.iter),
                   osp.join(runner.work_dir, f'rank{get_rank()}.pth'))


@HOOKS.register_module()
class DumpModuleStateHook(Hook):
    """Save this rank's state dict of the model's submodule ``module``
    after training to work_dir/{name}{rank}.pth."""

    priority = 'LOWEST'

    def __init__(self, module, name):
        self.module, self.name = module, name

    def after_train(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        torch.save(model.get_submodule(self.module).state_dict(),
                   osp.join(runner.work_dir, f'{self.name}{get_rank()}.pth'))
'''


def tool_env(env=None, **extra):
    """The environment for a tool: one thread per process (tiny models run
    many times faster so on a shared 2-core machine), plus ``extra``."""
    env = dict(os.environ if env is None else env, **extra)
    env.setdefault('OMP_NUM_THREADS', '1')
    return env


def run(args, cwd=REPO, env=None, timeout=600):
    """Run a command; return its output, failing with it on a bad exit."""
    proc = run_unchecked(args, cwd=cwd, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc.stdout


def run_unchecked(args, cwd=REPO, env=None, timeout=600):
    """Run a command; return the finished process (output in ``stdout``)."""
    return subprocess.run(
        args,
        cwd=cwd,
        env=tool_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)


def start(args, env=None, stdout=subprocess.PIPE):
    """Start a command in the background (output in ``stdout``)."""
    return subprocess.Popen(
        args,
        cwd=REPO,
        env=tool_env(env),
        stdout=stdout,
        stderr=subprocess.STDOUT,
        text=True)


def run_in_process_unchecked(name, argv):
    """Run ``tools/<name>`` with ``argv`` in this process, as its
    ``__main__`` does (``main()`` reading ``sys.argv``): ``(the exception
    it ended with or None, what it printed)`` (its runner's logger writes
    to the stream it finds at start)."""
    module = load_tool(name)
    try:
        output = as_main(name, argv, module.main)
    except Exception as error:  # the test decides
        return error, error.output
    return None, output


def run_cli_in_process(name, argv):
    """Run ``tools/<name>`` with ``argv`` in this process as its command
    line does (``run_tool(main)``: an input error is one line and status
    2): ``(exit status, what it printed)``."""
    module = load_tool(name)
    try:
        as_main(name, argv, lambda: run_tool(module.main))
    except SystemExit as end:
        code = end.code if isinstance(end.code, int) else 1
        return code, end.output
    except Exception as error:  # a traceback, as the process would end
        return 1, error.output + ''.join(
            traceback.format_exception(error))
    raise AssertionError(f'{name}: run_tool returned without exiting')


def as_main(name, argv, call):
    """``call()`` with ``sys.argv`` of ``tools/<name> argv`` and its output
    collected: returned, or on an exception (SystemExit too) set as its
    ``output``. Visualizers of earlier runs are forgotten first; mmengine's
    loggers made before write to the output meanwhile, and the loggers that
    the tool's runners made are closed after (the current logger is the
    one it was before)."""
    from mmengine.logging import MMLogger
    forget_visualizers()
    loggers = set(MMLogger._instance_dict)
    saved = sys.argv
    sys.argv = [osp.join(REPO, 'tools', name)] + [str(a) for a in argv]
    out = io.StringIO()
    # the loggers made before write to the streams they found then (which
    # may be closed by now: pytest's capture of an earlier test)
    streams = [(handler, handler.stream)
               for logger in list(MMLogger._instance_dict.values())
               for handler in logger.handlers
               if type(handler) is logging.StreamHandler]
    for handler, _ in streams:
        handler.stream = out
    try:
        with redirect_stdout(out), redirect_stderr(out):
            call()
    except BaseException as error:
        error.output = out.getvalue()
        raise
    finally:
        sys.argv = saved
        for handler, stream in streams:
            handler.stream = stream
        for made in set(MMLogger._instance_dict) - loggers:
            for handler in MMLogger._instance_dict.pop(made).handlers:
                handler.close()
    return out.getvalue()


def run_in_process(name, argv):
    """:func:`run_in_process_unchecked` that fails with the tool's error;
    what it printed."""
    error, out = run_in_process_unchecked(name, argv)
    if error is not None:
        raise AssertionError(out[-6000:]) from error
    return out


def pretrain_tiny_vit(*argv):
    """tools/misc/pretrain_tiny_vit.py in this process; what it printed.
    What it sets for the process for its exact bytes is restored after:
    torch's threads, deterministic algorithms, the global RNG state and
    ``sys.path`` (the tool puts tools/misc first)."""
    import torch
    path = list(sys.path)
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    rng = torch.get_rng_state()
    try:
        return run_in_process('misc/pretrain_tiny_vit.py', argv)
    finally:
        sys.path[:] = path
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic,
                                           warn_only=warn_only)
        torch.set_rng_state(rng)


def tool(name):
    return [sys.executable, osp.join(REPO, 'tools', name)]


LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def data_options(root, iters=None):
    """--cfg-options for tiny runs on the data at ``root``."""
    return [f'{loader}.dataset.data_root={root}' for loader in LOADERS] + \
        tiny_run_options(iters)


def tiny_run_options(iters=None):
    """--cfg-options for tiny runs, whatever the data: loading in the
    process, batches of 2, and with ``iters`` that many iterations,
    validated, saved and logged."""
    opts = [f'{loader}.{key}' for loader in LOADERS
            for key in ('num_workers=0', 'persistent_workers=False')]
    opts.append('train_dataloader.batch_size=2')
    if iters is not None:
        opts += [
            f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}',
            'default_hooks.logger.interval=1'
        ]
    return opts


def make_demo_data(root, num_train=16, num_val=4):
    """Write the synthetic ADE20K-layout demo data set to ``root`` (the
    generator run in this process)."""
    load_tool('misc/make_ade20k_demo.py').main(
        [str(root), '--num-train', str(num_train), '--num-val',
         str(num_val)])
    return str(root)


def printed_miou(out):
    """The last mIoU a tool printed (mmengine's metric line), a number."""
    found = re.findall(r'\bmIoU: (\d+\.\d+)', out)
    assert found, out[-3000:]
    return float(found[-1])


def validation_metric(work_dir, key='mIoU'):
    """The last validation ``key`` (mIoU, accuracy/top1) that a run in
    ``work_dir`` logged."""
    found = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data',
                                   'scalars.json')):
        with open(path) as file:
            found += [line[key] for line in map(json.loads, file)
                      if key in line]
    assert found, f'no validation {key} logged in {work_dir}'
    return found[-1]


def saved_miou(work_dir):
    """The mIoU that tools/test.py saved in its work dir's results."""
    found = []
    for path in glob.glob(osp.join(work_dir, '*', '*.json')):
        with open(path) as file:
            found.append(json.load(file)['mIoU'])
    assert len(found) == 1, f'{len(found)} results in {work_dir}'
    return found[0]


def check_test_output(out, work_dir, single_scale=None):
    """What tools/test.py printed in ``work_dir``: its mIoU read as a
    number, the one saved in its results (to 0.01) and above 0; with
    ``single_scale`` (the validation mIoU of the run that wrote the
    checkpoint) equal to that (to 0.01). A 12-view result is not compared
    with the single-scale one: on the tiny demos they differ by up to 6.6
    points (timm demo: 4.64 vs 11.25). Returns the mIoU."""
    miou = printed_miou(out)
    assert abs(miou - saved_miou(work_dir)) <= 0.01
    assert miou > 0, out[-3000:]
    if single_scale is not None:
        assert abs(miou - single_scale) <= 0.01, (miou, single_scale)
    return miou


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def built_once(tmp_path_factory, name, build):
    """The folder ``name``, filled by ``build(folder)`` once per test
    session, for runs that tests only read or copy (a two-rank training, a
    killed one): with pytest-xdist the first worker that asks builds it in
    the session's shared temporary folder while the others wait on a lock
    file, then read it; without, in this process's temporary folder. The
    folder is built where it stays (work dirs record their own paths); a
    build that fails is removed, and the next test to ask builds again."""
    if os.environ.get('PYTEST_XDIST_WORKER') is None:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    from filelock import FileLock
    root = tmp_path_factory.getbasetemp().parent  # shared by the workers
    folder, done = root / name, root / f'{name}.done'
    with FileLock(str(root / f'{name}.lock')):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                build(folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            done.touch()
    return folder


def write_config(path, text):
    path.write_text(textwrap.dedent(text))
    return str(path)


def module_env(folder, name, source):
    """An environment whose PYTHONPATH has the module ``name`` (``source``
    written to ``folder``), e.g. a hook that a test config imports."""
    (folder / f'{name}.py').write_text(source)
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [str(folder), env.get('PYTHONPATH', '')])
    return env


def train_demo(cfg, work_dir, demo_root, *options, resume=False):
    """tools/train.py CFG on the demo data at ``demo_root``, in this
    process; what it printed."""
    return run_in_process('train.py', [cfg, '--work-dir', work_dir] + (
        ['--resume'] if resume else []) + ['--cfg-options'] +
        data_options(demo_root) + list(options))


def dist_train_demo(cfg, work_dir, demo_root, iters, env):
    """tools/dist_train.sh CFG 2: two gloo ranks on the demo data."""
    env = dict(env, PORT=str(free_port()), CUDA_VISIBLE_DEVICES='')
    return run(['bash', osp.join(REPO, 'tools', 'dist_train.sh'), cfg, '2'] +
               ['--work-dir', str(work_dir), '--cfg-options'] +
               data_options(demo_root, iters=iters), env=env)


def parse_counts(output):
    """``name  1,234`` lines of tools/analysis/count_params.py -> dict."""
    return {
        m.group(1): int(m.group(2).replace(',', ''))
        for m in re.finditer(r'^\s+(\w+)\s+([\d,]+)$', output, re.M)
    }


#: the tests that run tools/analysis/compare_methods.py, on one worker of
#: pytest-xdist (--dist loadgroup, pytest.ini): the processes that start
#: its runs import the stack once and serve the worker's later comparisons
COMPARE_RUNS = pytest.mark.xdist_group('compare_methods')
