"""Where a prompted backbone's frozen weights come from, and state dicts that
leave them out.

A tuned-only checkpoint (``TunedCheckpointHook``, ``tools/export_task.py``)
holds what was tuned, not the frozen ViT. So that every client (mmengine's
``load_checkpoint`` and Runner, mmseg's ``init_model`` and
``MMSegInferencer``, mmpretrain's ``get_model``, ``load_state_dict``) ends
with the full model, the backbone restores the frozen weights itself:

* its extra state (the ``_extra_state`` key of every state dict, a uint8
  tensor of JSON so that state dicts stay all-tensor) records the base
  checkpoint the frozen weights were loaded from and their fingerprint, a
  SHA-256 of the frozen tensors (names, dtypes, shapes, bytes) in one
  canonical form (floating tensors as float32: an fp16 or bf16 file and
  the fp32 model loaded from it have the same), and the fingerprints of
  the tensors rounded to float16 and bfloat16 (so that a rounded copy of
  the base is named as a precision difference);
* when a state dict with a record lacks ViT weights, ``restore_absent``
  (called by the backbone before its children load) fills them in: from
  the model itself when its frozen weights have the fingerprint, else from
  the first base checkpoint whose weights do: the ``base_checkpoint``
  override when set (``tools/test.py --base-checkpoint``), else the
  recorded path, then the backbone's ``init_cfg`` checkpoint. No match
  raises :class:`FrozenBaseError`, naming each path and what was wrong with
  it.

The frozen base never comes from the network: a candidate that is not a
local file (a URL, ``s3://``, any scheme mmengine would fetch) is not
opened, nor is a recorded path that is not absolute; one that cannot be
read (truncated, corrupted, not a checkpoint) is skipped like a missing one.

:class:`FrozenBase` is the component that does this for a backbone; it sees
only the frozen ViT (a family module, see ``..families``), which of its
tensors are frozen, and the configured checkpoint.

State dicts without a record (older checkpoints, plain ViT weights) load as
before; loading one that brings ViT weights forgets the recorded base.
"""
import hashlib
import json
import os.path as osp
from itertools import chain
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor, nn

from ... import json_data

EXTRA_STATE_KEY = '_extra_state'
RECORD_FORMAT = 'mmseg_cvpt.frozen_base'
RECORD_VERSION = 1
# the precisions a copy of a base may be rounded to (see ``fingerprint``)
ROUNDED_DTYPES = ('float16', 'bfloat16')
NOT_LOCAL = ('not a local file: the frozen base is read only from local '
             'files, never from the network; download it and give its local '
             'path')


class FrozenBaseError(RuntimeError):
    """A tuned-only state dict whose frozen weights cannot be restored."""


def fingerprint(tensors: Dict[str, Tensor],
                rounded_to: Optional[str] = None) -> str:
    """SHA-256 of the tensors' names, dtypes, shapes and bytes (hex), the
    floating ones as float32 (first rounded to ``rounded_to``, e.g.
    'float16', when given): float32 tensors hash as they are, and a base's
    fp16 / bf16 copy hashes as the fp32 model loaded from it."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu()
        if tensor.is_floating_point():
            if rounded_to:
                tensor = tensor.to(getattr(torch, rounded_to))
            tensor = tensor.float()
        tensor = tensor.contiguous()
        digest.update(f'{name}:{tensor.dtype}:{tuple(tensor.shape)};'.encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def encode_record(record: dict) -> Tensor:
    """The record as the uint8 tensor stored under ``_extra_state``."""
    return torch.tensor(list(json.dumps(record).encode()), dtype=torch.uint8)


def decode_record(state) -> dict:
    """The record of an ``_extra_state`` tensor; a foreign one raises."""
    try:
        record = json_data.loads(bytes(state.tolist()).decode())
    except (AttributeError, TypeError, ValueError) as error:
        raise ValueError('the backbone\'s _extra_state is not a frozen-base '
                         f'record of mmseg_cvpt: {error}') from error
    if not isinstance(record, dict) or record.get('format') != RECORD_FORMAT:
        raise ValueError(f'the backbone\'s _extra_state is not a frozen-base '
                         f'record of mmseg_cvpt: {record!r}')
    if record.get('version', 0) > RECORD_VERSION:
        raise ValueError(
            f'frozen-base record version {record["version"]} is newer than '
            f'this mmseg_cvpt reads ({RECORD_VERSION}); update mmseg_cvpt')
    rounded = record.get('rounded', {})
    fields = [record.get(k) for k in ('checkpoint', 'prefix', 'fingerprint')]
    if not (all(f is None or isinstance(f, str) for f in fields)
            and isinstance(rounded, dict)
            and all(isinstance(v, str) for v in rounded.values())):
        raise ValueError('the backbone\'s frozen-base record has fields of '
                         f'the wrong type: {record!r}')
    return record


def remote(path: str) -> bool:
    """Whether ``path`` is not a local file for mmengine's CheckpointLoader:
    a URL or another scheme it would fetch (``https://``, ``s3://``, ...)."""
    loader = CheckpointLoader._get_checkpoint_loader(path)
    return '://' in path or loader is not CheckpointLoader._schemes['']


def local_path(path: str) -> str:
    """Absolute, ``~`` expanded, for local files; URLs unchanged."""
    return path if remote(path) else osp.abspath(osp.expanduser(path))


def available(path: str) -> bool:
    """Whether the local checkpoint file ``path`` exists; a URL raises
    ``ValueError`` (the frozen base is read only from local files)."""
    if remote(path):
        raise ValueError(f'{path}: {NOT_LOCAL}')
    return osp.isfile(local_path(path))


def path_problem(path, recorded: bool = False) -> Optional[str]:
    """Why the base checkpoint ``path`` is not opened, or None. A recorded
    path (from a checkpoint's record) must also be absolute, as we record
    them: a relative one would depend on the folder loading it."""
    if not isinstance(path, str):
        return f'not a path ({path!r})'
    if remote(path):
        return NOT_LOCAL
    if recorded and not osp.isabs(path):
        return 'not an absolute path (records hold absolute paths)'
    return None if osp.isfile(local_path(path)) else 'not found'


def mismatch(found: str, expected: dict) -> str:
    """What is wrong with tensors of fingerprint ``found``: a rounded copy
    of the base (a precision difference) or other weights."""
    rounded = expected.get('rounded', {})
    dtype = next((d for d in ROUNDED_DTYPES if rounded.get(d) == found), None)
    if dtype:
        return (f'a precision difference: its tensors are the base\'s '
                f'rounded to {dtype}, not the values the task was tuned on; '
                'give the base in its own precision (e.g. the float32 file)')
    return (f'fingerprint {found[:16]}... differs (other weights or another '
            'ViT architecture)')


class FrozenBase:
    """Records and restores the frozen weights of a ViT family module.

    Args:
        vit (nn.Module): the frozen ViT (its state-dict keys are the
            backbone's for these weights).
        is_frozen (callable): key -> whether that ViT tensor is frozen.
        owner (str): the backbone's name, for messages.

    Attributes:
        record (dict | None): ``dict(checkpoint=..., prefix=...)``, the
            checkpoint the frozen weights were loaded from; None when
            unknown (random or from a checkpoint without a record).
        override (str | None): where to take the frozen weights of a
            tuned-only state dict from, before the recorded path.
        configured (callable, optional): () -> where the backbone's ViT
            weights come from (``dict(checkpoint=..., prefix=...)`` or
            None), the last checkpoint tried; asked when it is needed.
    """

    def __init__(self, vit: nn.Module, is_frozen: Callable[[str], bool],
                 owner: str, override: Optional[str] = None,
                 configured: Optional[Callable[[], Optional[dict]]] = None):
        self.vit = vit
        self.is_frozen = is_frozen
        self.owner = owner
        self.record: Optional[dict] = None
        self.override = override
        self.configured = configured
        self._fingerprint_cache = (None, {})

    def frozen_keys(self) -> List[str]:
        """The ViT tensors that do not train: what a base checkpoint gives."""
        return sorted(k for k in self.vit.pretrained_keys if self.is_frozen(k))

    def tensors(self, keys: Iterable[str]) -> Dict[str, Tensor]:
        own = dict(chain(self.vit.named_parameters(),
                         self.vit.named_buffers()))
        return {k: own[k] for k in keys}

    def state_dict(self) -> Dict[str, Tensor]:
        """The frozen tensors, detached: the content of a base checkpoint."""
        return {k: t.detach() for k, t in self.tensors(
            self.frozen_keys()).items()}

    def fingerprint(self, keys: Optional[List[str]] = None,
                    rounded_to: Optional[str] = None) -> str:
        """``fingerprint`` of the frozen tensors (or of ``keys``); cached
        while the tensors are the same objects, unmodified."""
        tensors = self.tensors(self.frozen_keys() if keys is None else keys)
        key = tuple((name, id(t), t.data_ptr(), t._version)
                    for name, t in tensors.items())
        cached_key, values = self._fingerprint_cache
        if cached_key != key:
            values = {}
            self._fingerprint_cache = (key, values)
        if rounded_to not in values:
            values[rounded_to] = fingerprint(tensors, rounded_to)
        return values[rounded_to]

    def fingerprints(self) -> dict:
        """The record's ``fingerprint`` and ``rounded`` (dtype name ->
        fingerprint of the frozen tensors rounded to it)."""
        return dict(fingerprint=self.fingerprint(),
                    rounded={dtype: self.fingerprint(rounded_to=dtype)
                             for dtype in ROUNDED_DTYPES})

    def loaded_from(self, path: str, prefix: Optional[str]) -> None:
        """The ViT's weights were loaded from ``path``: its base, unless a
        checkpoint loaded before recorded one."""
        if self.record is None:
            self.record = dict(checkpoint=local_path(path), prefix=prefix)

    # ---- the record in state dicts ------------------------------------------
    def extra_state(self) -> Tensor:
        base = self.record or {}
        return encode_record(
            dict(format=RECORD_FORMAT, version=RECORD_VERSION,
                 checkpoint=base.get('checkpoint'), prefix=base.get('prefix'),
                 **(self.fingerprints() if base else dict(fingerprint=None))))

    def set_extra_state(self, state: Tensor) -> None:
        record = decode_record(state)
        self.record = (dict(checkpoint=record['checkpoint'],
                            prefix=record.get('prefix'))
                       if record.get('checkpoint') else None)

    def adopt(self, path: str, prefix: Optional[str] = None) -> Optional[str]:
        """Record ``path`` as the base checkpoint if its weights are the
        frozen weights; else return what is wrong with it."""
        _, problem = self._base_tensors(path, prefix, self.frozen_keys(),
                                        self.fingerprints())
        if problem is None:
            self.record = dict(checkpoint=local_path(path), prefix=prefix)
        return problem

    def share_from(self, other: 'FrozenBase',
                   keys: Optional[List[str]] = None) -> None:
        """Make the frozen tensors (or those of ``keys``) ``other``'s, the
        same objects: one copy in memory for both."""
        keys = self.frozen_keys() if keys is None else keys
        mine, theirs = self.tensors(keys), other.tensors(keys)
        misfit = [k for k in keys if mine[k].shape != theirs[k].shape]
        if misfit:
            raise ValueError(f'cannot share frozen weights of another shape: '
                             f'{misfit[:5]}')
        for key in keys:
            path, _, name = key.rpartition('.')
            setattr(self.vit.get_submodule(path), name, theirs[key])
        self._fingerprint_cache = other._fingerprint_cache
        self.record = other.record

    # ---- loading ----------------------------------------------------------
    def restore_absent(self, state_dict: dict, prefix: str,
                       record_key: str) -> None:
        """Complete a state dict (keys ``prefix`` + ViT key) that lacks ViT
        weights but has a record (``record_key``) from its base; a state
        dict that brings ViT weights without a record forgets the base."""
        pretrained = self.vit.pretrained_keys
        absent = [k for k in sorted(pretrained)
                  if prefix + k not in state_dict]
        if record_key in state_dict and absent:
            record = decode_record(state_dict[record_key])
            tensors, checkpoint = self._restore_frozen(record, absent)
            state_dict.update({prefix + k: v for k, v in tensors.items()})
            state_dict[record_key] = encode_record(
                dict(record, checkpoint=checkpoint))
        elif len(absent) < len(pretrained):
            self.record = None  # ViT weights from an unrecorded source

    def _restore_frozen(self, record: dict,
                        keys: List[str]) -> Tuple[Dict[str, Tensor], str]:
        """The frozen tensors ``keys`` with the record's fingerprint, and
        the checkpoint they come from."""
        expected = record.get('fingerprint')
        name = self.owner
        if not expected:
            raise FrozenBaseError(
                f'{name}: the state dict lacks {len(keys)} frozen ViT '
                f'weights (e.g. {keys[:3]}) and records no base checkpoint '
                'to take them from; load a full checkpoint')
        if self.fingerprint(keys) == expected:
            return self.tensors(keys), record['checkpoint']
        problems = []
        for path, prefix, recorded in self._base_candidates(record):
            tensors, problem = self._base_tensors(path, prefix, keys, record,
                                                  recorded)
            if problem is None:
                if problems:
                    print_log(f'{name}: frozen weights from {path} ('
                              f'{"; ".join(problems)})', logger='current')
                return tensors, local_path(path)
            problems.append(f'{path}: {problem}')
        raise FrozenBaseError(
            f'{name}: the checkpoint holds only tuned weights; its '
            f'{len(keys)} frozen ViT weights must come from the base '
            f'checkpoint with fingerprint {expected[:16]}..., and no '
            f'checkpoint tried has them: {"; ".join(problems)}. Put the base '
            'checkpoint at the recorded path, or give its path '
            '(tools/test.py --base-checkpoint PATH, or the backbone\'s '
            'base_checkpoint=PATH), or load a full checkpoint '
            '(tools/export_task.py CKPT --full --out FULL.pth).')

    def _base_candidates(self, record: dict) -> List[Tuple[str, str, bool]]:
        """(path, prefix, whether recorded) of the checkpoints to try, in
        order."""
        if self.override:
            return [(self.override, record.get('prefix'), False)]
        candidates = [(record['checkpoint'], record.get('prefix'), True)]
        configured = (self.configured and self.configured()) or {}
        path = configured.get('checkpoint')
        if path and local_path(path) != record['checkpoint']:
            candidates.append((path, configured.get('prefix'), False))
        return candidates

    def _base_tensors(self, path: str, prefix: Optional[str],
                      keys: List[str], expected: dict,
                      recorded: bool = False):
        """``(tensors, None)`` from ``path`` if they have the fingerprint of
        ``expected`` (a record), else ``(None, what is wrong)``."""
        problem = path_problem(path, recorded)
        if problem:
            return None, problem
        try:
            state = self._read_base(path, prefix)
        except Exception as error:  # whatever the file is, it is no base
            text = str(error).strip().split('\n')[0][:200]
            return None, f'unreadable ({type(error).__name__}: {text})'
        lacking = [k for k in keys if k not in state]
        if lacking:
            return None, f'lacks {len(lacking)} of the weights, e.g. ' \
                f'{lacking[:3]}'
        tensors = {k: state[k] for k in keys}
        found = fingerprint(tensors)
        if found != expected['fingerprint']:
            return None, mismatch(found, expected)
        return tensors, None

    def _read_base(self, path: str, prefix: Optional[str]) -> dict:
        """The ViT tensors of the local checkpoint ``path`` in the family's
        keys (the family's ``checkpoint_weights``)."""
        checkpoint = CheckpointLoader.load_checkpoint(local_path(path),
                                                      map_location='cpu')
        state = checkpoint.get('state_dict', checkpoint) \
            if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise TypeError(f'not a checkpoint: holds a '
                            f'{type(checkpoint).__name__}, not tensors')
        return self.vit.checkpoint_weights(state, prefix)
