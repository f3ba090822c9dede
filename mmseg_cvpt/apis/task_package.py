"""Task packages: what a task tuned, without the frozen backbone.

A task package is a checkpoint that every OpenMMLab client loads
(``state_dict`` and ``meta`` like a runner checkpoint's):

* ``state_dict``: the tuned tensors (``tuned_state_dict``: trainable
  parameters, buffers of prompts, guidance and heads) and the backbone's
  record of its base checkpoint (path and fingerprint of the frozen
  weights), from which loading restores the frozen ViT;
* ``meta``: ``cfg_dict`` (the config as data, JSON: what our loaders read),
  ``cfg`` (the config text, for display; never run), ``model_identity``
  (model and backbone types, the method's structure), ``dataset_meta`` when
  the source had it, and ``task_package``: format, version, the mmseg_cvpt
  version, the base checkpoint and fingerprint, and ``full`` (False).

``export_task`` turns any checkpoint of ours (full or tuned-only, runner or
plain state dict) into a package, or with ``full=True`` into a standalone
full checkpoint (the same, with every tensor).
"""
import io
from typing import Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner.checkpoint import (_load_checkpoint,
                                        _load_checkpoint_to_model)
from torch import nn

from ..engine import load_config
from ..engine.checkpoint import write_atomic
from ..engine.checkpoint_files import SAFETENSORS_SUFFIX, safetensors_bytes
from ..engine.config_data import (CONFIG_DATA_KEY, config_from_data,
                                  config_to_data)
from ..engine.loading import (IDENTITY_KEY, check_model_identity,
                              model_identity)
from ..models import backbone_of, tuned_state_dict
from ..models.backbones.frozen_base import (EXTRA_STATE_KEY, available,
                                            decode_record, local_path)
from ..version import __version__

PACKAGE_FORMAT = 'mmseg_cvpt.task_package'
PACKAGE_VERSION = 1


def save_file(obj: dict, path: str) -> None:
    """``torch.save`` to ``path``, or a safetensors file (tensors, meta as
    JSON, CRC-32s) when it ends in ``.safetensors``; atomically."""
    if str(path).endswith(SAFETENSORS_SUFFIX):
        data = safetensors_bytes(obj)
    else:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        data = buffer.getvalue()
    write_atomic(data, path)


def checkpoint_config(checkpoint: dict, path: str,
                      config: Optional[str] = None) -> Config:
    """``config`` (a file) if given, else the config a checkpoint holds as
    data (``meta['cfg_dict']``: our runner checkpoints and task packages).
    Its Python text (``meta['cfg']``) is never run."""
    if config is not None:
        return load_config(config)
    meta = checkpoint.get('meta', {})
    if meta.get(CONFIG_DATA_KEY):
        return config_from_data(meta[CONFIG_DATA_KEY], path)
    if meta.get('cfg'):
        raise ValueError(f'{path} holds its config only as Python text, '
                         'which is not executed: pass --config CONFIG (the '
                         'config it was trained with)')
    raise ValueError(f'{path} holds no config (meta.cfg_dict): pass the '
                     'config it was trained with (--config CONFIG)')


def model_meta(cfg: Config, model: nn.Module) -> dict:
    """The ``meta`` that tells a checkpoint's loaders its config (as data,
    and as text for display) and its model's identity."""
    return {
        CONFIG_DATA_KEY: config_to_data(cfg),
        'cfg': cfg.pretty_text,
        IDENTITY_KEY: model_identity(model)
    }


def build_model(cfg: Config) -> nn.Module:
    """The model of a config, built as the Runner builds it (in the
    config's default scope, with its top-level data preprocessor); no
    weights are loaded."""
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return MODELS.build(model_cfg)


def build_from_checkpoint(path: str, config: Optional[str] = None
                          ) -> Tuple[nn.Module, dict, Config]:
    """``(model, checkpoint, cfg)``: the checkpoint read and its model
    built (of the identity the checkpoint records), nothing loaded yet."""
    checkpoint = _load_checkpoint(path, map_location='cpu')
    cfg = checkpoint_config(checkpoint, path, config)
    model = build_model(cfg)
    check_model_identity(model, checkpoint, path)
    return model, checkpoint, cfg


def frozen_record(model: nn.Module, checkpoint: dict) -> Optional[dict]:
    """The backbone's base record in a checkpoint's state dict, or None."""
    _, prefix = backbone_of(model)
    state = checkpoint.get('state_dict', checkpoint)
    key = prefix + EXTRA_STATE_KEY
    return decode_record(state[key]) if key in state else None


def write_base(backbone: nn.Module, path: str) -> None:
    """Save the backbone's frozen tensors as its base checkpoint."""
    save_file(dict(state_dict=backbone.frozen_state_dict()), path)
    backbone.frozen_base = dict(checkpoint=local_path(path), prefix=None)


def record_base(backbone: nn.Module, path: Optional[str] = None) -> None:
    """Give the backbone's frozen weights a base checkpoint on record.

    ``path`` when given: an existing checkpoint must hold the frozen weights
    (fingerprint), a missing file is written with them. Otherwise the
    recorded base stays; without one the configured checkpoint (the
    backbone's ``pretrained_source``: its Pretrained ``init_cfg`` or its
    family's ``checkpoint``) is taken if its weights are the frozen ones.
    """
    if path and available(path):
        problem = backbone.adopt_base(path)
    elif path:
        write_base(backbone, path)
        return
    elif backbone.frozen_base:
        return
    else:
        source = backbone.pretrained_source() or {}
        path = source.get('checkpoint')
        problem = backbone.adopt_base(path, source.get('prefix')) \
            if path else 'no Pretrained init_cfg checkpoint in the config'
    if problem:
        raise ValueError(
            f'no base checkpoint holds the frozen weights ({path}: '
            f'{problem}); pass --base-checkpoint PATH: an existing base '
            'checkpoint, or where to write the frozen weights as one')


def export_task(path: str,
                out: str,
                config: Optional[str] = None,
                full: bool = False,
                base_checkpoint: Optional[str] = None) -> dict:
    """Write the task package (or, ``full=True``, the full checkpoint) of
    the checkpoint at ``path`` to ``out``; returns what was written.

    ``config``: the config file, for checkpoints without one (plain state
    dicts). ``base_checkpoint``: where the base checkpoint is when it is not
    at the recorded path, or, for a full checkpoint without a known base,
    the base to record (see ``record_base``).
    """
    model, checkpoint, cfg = build_from_checkpoint(path, config)
    backbone, _ = backbone_of(model)
    if base_checkpoint and available(base_checkpoint):
        backbone.base_checkpoint = base_checkpoint
    _load_checkpoint_to_model(model, checkpoint, strict=True)
    if not full:
        record_base(backbone, base_checkpoint)
    state = model.state_dict()
    record = frozen_record(model, dict(state_dict=state))
    meta = dict(
        model_meta(cfg, model),
        task_package=dict(
            format=PACKAGE_FORMAT, version=PACKAGE_VERSION,
            mmseg_cvpt=__version__, full=full, source=local_path(path),
            base_checkpoint=record['checkpoint'],
            fingerprint=record['fingerprint']))
    if 'dataset_meta' in checkpoint.get('meta', {}):
        meta['dataset_meta'] = checkpoint['meta']['dataset_meta']
    if not full:
        state = tuned_state_dict(model, state)
    package = dict(meta=meta, state_dict=state)
    save_file(package, out)
    return package
