"""Helpers for tests that run our tools as a user does, on tiny CPU runs.

The tools run as subprocesses from the repository root on a few synthetic
64x64 scenes of tools/misc/make_ade20k_demo.py with the demo config
(configs/cvpt/upernet_vittiny_ade20k_demo.py).
"""
import os
import os.path as osp
import socket
import subprocess
import sys
import textwrap

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CFG = osp.join(REPO, 'configs', 'cvpt', 'upernet_vittiny_ade20k_demo.py')


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


def tool(name):
    return [sys.executable, osp.join(REPO, 'tools', name)]


def data_options(root, iters=None):
    """--cfg-options for tiny runs on the data at ``root``."""
    opts = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [
            f'{loader}.dataset.data_root={root}', f'{loader}.num_workers=0',
            f'{loader}.persistent_workers=False'
        ]
    opts.append('train_dataloader.batch_size=2')
    if iters is not None:
        opts += [
            f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}',
            'default_hooks.logger.interval=1'
        ]
    return opts


def make_demo_data(root, num_train=16, num_val=4):
    """Write the synthetic ADE20K-layout demo data set to ``root``."""
    run(tool('misc/make_ade20k_demo.py') +
        [str(root), '--num-train', str(num_train), '--num-val',
         str(num_val)])
    return str(root)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


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
