"""How our tools read a config: one place for the steps they all need."""
import os.path as osp
from typing import Optional

from mmengine.config import Config

from ..datasets import resolve_task


def load_config(path: str,
                cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None) -> Config:
    """Read ``path``, apply ``--cfg-options`` and resolve a classification task.

    ``mmseg_cvpt`` is imported by then (this module is part of it), so
    ``mmseg_cvpt::`` bases resolve. ``work_dir`` (the command line) wins over
    the config's; the default is ``./work_dirs/<config name>[/<task>]``.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    resolve_task(cfg)  # a no-op for configs without a `task`
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        name = osp.splitext(osp.basename(path))[0]
        cfg.work_dir = osp.join('./work_dirs', name, cfg.get('task') or '')
    return cfg
