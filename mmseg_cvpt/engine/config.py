"""How our tools read a config: one place for the steps they all need."""
import argparse
import os
import os.path as osp
from typing import Optional

from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from ..datasets import resolve_task


def iter_dicts(cfg):
    """Every dict in a (nested) config, ``cfg`` itself included."""
    if isinstance(cfg, dict):
        yield cfg
        values = cfg.values()
    elif isinstance(cfg, (list, tuple)):
        values = cfg
    else:
        return
    for value in values:
        yield from iter_dicts(value)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options``, ``--launcher`` and torchrun's ``--local-rank``."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config: key=value pairs merged into '
        'it, e.g. model.backbone.num_prompts=50 or key="[a,b]" for a list '
        '(quotes needed, no white space)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--local_rank',
        '--local-rank',
        type=int,
        default=0,
        action=_LocalRank,
        help='set by torch.distributed.launch (torchrun uses LOCAL_RANK)')


class _LocalRank(argparse.Action):
    """Store --local-rank and export it as LOCAL_RANK unless already set."""

    def __call__(self, parser, namespace, value, option_string=None):
        setattr(namespace, self.dest, value)
        os.environ.setdefault('LOCAL_RANK', str(value))


#: configs/ and tools/ of the installed package (see setup.py)
PACKAGED = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), '.mim')


def find_config(path: str) -> str:
    """``path``, or for a relative ``configs/...`` path that is not here the
    installed package's copy (``mim run`` starts our tools in any folder).
    """
    if osp.isfile(path):
        return path
    packaged = osp.join(PACKAGED, path)
    if osp.isabs(path) or not osp.isfile(packaged):
        raise FileNotFoundError(f'config file not found: {path}')
    print_log(f'{path} is not in {os.getcwd()}: using {packaged}',
              logger='current')
    return packaged


def load_config(path: str,
                cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None) -> Config:
    """Read ``path`` (see :func:`find_config`), apply ``--cfg-options`` and
    resolve a classification task.

    ``mmseg_cvpt`` is imported by then (this module is part of it), so
    ``mmseg_cvpt::`` bases resolve. ``work_dir`` (the command line) wins over
    the config's; the default is ``./work_dirs/<config name>[/<task>]``.
    The config's text (the runner's log, the copy it dumps to the work dir)
    is mmengine's, one key per line, not reflowed by yapf: that takes 0.3
    to 0.6 s a run on a CPU, longer than building a tiny model.
    """
    cfg = Config.fromfile(find_config(path))
    # what Config.fromfile(format_python_code=False) should set (mmengine
    # 0.10.7 passes it on for lazy-import configs only)
    object.__setattr__(cfg, '_format_python_code', False)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    resolve_task(cfg)  # a no-op for configs without a `task`
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        name = osp.splitext(osp.basename(path))[0]
        cfg.work_dir = osp.join('./work_dirs', name, cfg.get('task') or '')
    return cfg
