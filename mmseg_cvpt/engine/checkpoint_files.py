"""Checkpoint files that are checked whenever they are read, and safetensors
packages.

:func:`register_local_loader` (run when ``mmseg_cvpt.engine`` is imported)
puts :func:`load_from_local` in place of mmengine's loader of local paths
(``CheckpointLoader``'s scheme ``''``), which every client reads through:
the Runner (``load_from``, ``--resume``, ``tools/test.py``),
``load_checkpoint``, mmseg's ``init_model``, ``export_task``,
``MultiTaskModel`` and the backbones' base checkpoints. By content:

* a ``torch.save`` zip archive: every entry is checked against the CRC-32
  of the zip directory before ``torch.load`` reads it (torch's reader does
  not check); a damaged entry is a :class:`CheckpointFileError` naming the
  file, the entry (``archive/data/12``) and the tensors stored in it;
* a zip archive without its directory (written last): truncated, an error;
* a safetensors file: the tensors are checked against the CRC-32s our
  :func:`safetensors_bytes` records in its metadata (dtype, shape and bytes
  of each tensor, and the meta's JSON) and come back as ``dict(meta=...,
  state_dict=...)``; a safetensors file without that record (not written
  by us) loads unchecked;
* anything else (the legacy, pre-zip torch format, which has no checksums)
  goes to ``torch.load`` as before.

Loading is mmengine's otherwise: ``torch.load`` with torch's default
``weights_only``, the given ``map_location``, a missing file a
``FileNotFoundError``. Safetensors load onto the device ``map_location``
names (a string or ``torch.device``), else onto the CPU.
"""
import json
import os.path as osp
import pickle
import struct
import zipfile
import zlib
from collections import defaultdict
from typing import Dict, Iterator, List, Tuple

import torch
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.runner.checkpoint import \
    load_from_local as mmengine_load_from_local
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_save

from .. import json_data
from .loading import key_examples

SAFETENSORS_SUFFIX = '.safetensors'
META_KEY = 'mmseg_cvpt.meta'
CRC_KEY = 'mmseg_cvpt.crc32'
_AGAIN = 'Copy or download it again, or use another checkpoint.'
_CHANGED = 'it changed after it was written (a bad disk, copy or download)'
#: the largest header safetensors reads
SAFETENSORS_MAX_HEADER = 100_000_000
#: the first byte of a pickle (protocol 2 or later): the legacy torch format
_PICKLE = b'\x80'


class CheckpointFileError(RuntimeError):
    """A checkpoint file that is damaged, truncated or unreadable."""


def _bytes_of(tensor: torch.Tensor):
    """The tensor's bytes as a numpy uint8 array (no copy when contiguous)."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(
        torch.uint8).numpy()


def tensor_crc32(tensor: torch.Tensor) -> int:
    """CRC-32 of a tensor's dtype, shape and bytes."""
    crc = zlib.crc32(f'{tensor.dtype}:{tuple(tensor.shape)};'.encode())
    return zlib.crc32(_bytes_of(tensor), crc)


# ---- torch zip archives -----------------------------------------------------
def _entry_intact(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Whether the entry reads to its end with the directory's CRC-32."""
    try:
        with archive.open(info) as entry:
            while entry.read(1 << 24):
                pass
    except (zipfile.BadZipFile, zlib.error, EOFError):
        return False
    return True


def _stored_bytes(file, info: zipfile.ZipInfo) -> bytes:
    """An uncompressed entry's bytes as they are, unchecked (torch stores
    entries uncompressed): after the 30-byte local header, its name and
    its extra field."""
    file.seek(info.header_offset + 26)
    name_length, extra_length = struct.unpack('<HH', file.read(4))
    file.seek(info.header_offset + 30 + name_length + extra_length)
    return file.read(info.compress_size)


def _named_tensors(obj, path: Tuple[str, ...] = ()
                   ) -> Iterator[Tuple[str, torch.Tensor]]:
    """``('state_dict/backbone.cls_token', tensor)`` for every tensor of a
    loaded checkpoint (dicts, lists and tuples searched)."""
    if isinstance(obj, torch.Tensor):
        yield '/'.join(path), obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _named_tensors(value, path + (str(key), ))
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from _named_tensors(value, path + (str(index), ))


def _tensors_in(path: str,
                infos: List[zipfile.ZipInfo]) -> Dict[str, List[str]]:
    """Entry name -> the tensors that torch reads from it: those whose
    storage's CRC-32 is the entry's actual one. Empty if the damaged file
    does not load at all."""
    with open(path, 'rb') as file:
        actual = {zlib.crc32(_stored_bytes(file, info)): info.filename
                  for info in infos}
    try:
        checkpoint = torch.load(path, map_location='cpu')
    except Exception:  # whatever torch raises: the entries are named
        return {}
    found, seen = defaultdict(list), {}
    for name, tensor in _named_tensors(checkpoint):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen[storage.data_ptr()] = zlib.crc32(_bytes_of(
                torch.empty(0, dtype=torch.uint8).set_(storage)))
        entry = actual.get(seen[storage.data_ptr()])
        if entry:
            found[entry].append(name)
    return found


def check_zip(path: str) -> None:
    """Check every entry of the zip archive at ``path`` (a ``torch.save``
    file) against the CRC-32 in its directory.

    Raises:
        CheckpointFileError: naming the damaged entries and their tensors.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = [info for info in archive.infolist()
                       if not _entry_intact(archive, info)]
    except (zipfile.BadZipFile, OSError) as error:
        raise CheckpointFileError(
            f'{path}: its zip directory cannot be read ({error}). '
            f'{_AGAIN}') from error
    if damaged:
        tensors = _tensors_in(path, damaged)
        names = [info.filename + (f' ({", ".join(tensors[info.filename])})'
                                  if tensors.get(info.filename) else '')
                 for info in damaged]
        raise CheckpointFileError(
            f'{path} is damaged: {len(names)} zip entries fail their CRC-32 '
            f'check: {key_examples(names)}; {_CHANGED}. {_AGAIN}')


def _is_truncated_zip(head: bytes) -> bool:
    """A zip archive's first local header without the directory at the
    end, which is written last: an interrupted write or download."""
    return head.startswith(b'PK\x03\x04')


# ---- safetensors ------------------------------------------------------------
def is_safetensors(head: bytes) -> bool:
    """Whether a file starting with ``head`` (9 bytes or more) claims to be
    a safetensors file: a header length (8 bytes), then the JSON header's
    opening brace (see :func:`check_safetensors_header`)."""
    return head[8:9] == b'{'


def check_safetensors_header(path: str, head: bytes, size: int) -> None:
    """Refuse a safetensors header length that is negative, larger than
    safetensors reads (100 MB) or past the end of the ``size``-byte file.

    Raises:
        CheckpointFileError: naming the file and the length.
    """
    length = int.from_bytes(head[:8], 'little', signed=True)
    problem = ('negative' if length < 0 else
               'larger than the 100 MB safetensors reads'
               if length > SAFETENSORS_MAX_HEADER else
               f'past the end of the file ({size} bytes)'
               if 8 + length > size else None)
    if problem:
        raise CheckpointFileError(
            f'{path}: not a readable safetensors file (its header length '
            f'{length} is {problem}). {_AGAIN}')


def _meta_json(meta) -> str:
    """``meta`` as JSON; anything JSON cannot hold is a ValueError."""

    def refuse(obj):
        raise TypeError(f'{type(obj).__name__} {obj!r:.80}')

    try:
        return json.dumps(meta, allow_nan=False, default=refuse)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f'the checkpoint\'s meta is not JSON ({error}): a safetensors '
            'file keeps meta as JSON (dicts, lists, strings, finite numbers, '
            'booleans, None); write a .pth file instead') from error


def safetensors_bytes(checkpoint: dict) -> bytes:
    """A ``dict(meta=..., state_dict=...)`` checkpoint as a safetensors
    file: the tensors, the meta as JSON and the CRC-32s of both in the
    header's metadata."""
    extra = sorted(set(checkpoint) - {'meta', 'state_dict'})
    if extra:
        raise ValueError(f'a safetensors file holds a state dict and meta, '
                         f'not {extra}; write a .pth file instead')
    state = checkpoint.get('state_dict', {})
    other = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if other:
        raise ValueError(f'a safetensors file holds tensors only, not '
                         f'{key_examples(other)}; write a .pth file instead')
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta = _meta_json(checkpoint.get('meta', {}))
    crcs = dict(meta=zlib.crc32(meta.encode()),
                tensors={k: tensor_crc32(v) for k, v in tensors.items()})
    return safetensors_save(
        tensors, dict(format='pt', **{META_KEY: meta,
                                      CRC_KEY: json.dumps(crcs)}))


def _recorded_crcs(path: str, metadata: dict) -> Tuple[int, dict]:
    """The CRC-32 of the meta and those of the tensors (name -> CRC-32)
    that our safetensors header records."""
    try:
        crcs = json_data.loads(metadata[CRC_KEY])
        return crcs['meta'], dict(crcs['tensors'])
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointFileError(f'{path} is damaged: its record of CRC-32s '
                                  f'({CRC_KEY}) is unreadable. {_AGAIN}'
                                  ) from error


def _check_safetensors(path: str, tensors: dict, metadata: dict) -> None:
    """Compare the tensors and the meta with the recorded CRC-32s."""
    meta_crc, recorded = _recorded_crcs(path, metadata)
    damaged = [] if meta_crc == zlib.crc32(
        metadata.get(META_KEY, '').encode()) else [f'{META_KEY} (the meta)']
    for key in sorted(set(recorded) | set(tensors)):
        if key not in tensors:
            damaged.append(f'{key} (missing)')
        elif key not in recorded:
            damaged.append(f'{key} (not recorded)')
        elif recorded[key] != tensor_crc32(tensors[key]):
            damaged.append(key)
    if damaged:
        raise CheckpointFileError(
            f'{path} is damaged: {len(damaged)} tensors differ from the '
            f'CRC-32 recorded when it was written: {key_examples(damaged)}; '
            f'{_CHANGED}. {_AGAIN}')


def load_safetensors(path: str, map_location=None) -> dict:
    """``dict(meta=..., state_dict=...)`` of a safetensors file, checked
    when it has our record of CRC-32s."""
    try:
        with safe_open(path, framework='pt') as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}
        if CRC_KEY in metadata:
            _check_safetensors(path, tensors, metadata)
        meta = json_data.loads(metadata.get(META_KEY, '{}'))
        if not isinstance(meta, dict):
            raise ValueError(f'its {META_KEY} is not a JSON object')
    except (SafetensorError, ValueError) as error:
        raise CheckpointFileError(
            f'{path}: not a readable safetensors file ({error}). {_AGAIN}'
        ) from error
    if isinstance(map_location, (str, torch.device)):
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    return dict(meta=meta, state_dict=tensors)


# ---- the loader -------------------------------------------------------------
def load_from_local(filename: str, map_location=None):
    """mmengine's ``load_from_local``, the file checked first (see the
    module's docstring); safetensors files read as checkpoints."""
    path = osp.expanduser(filename)
    if osp.isfile(path):
        with open(path, 'rb') as file:
            head = file.read(9)
        if zipfile.is_zipfile(path):
            check_zip(path)
        elif is_safetensors(head):
            check_safetensors_header(path, head, osp.getsize(path))
            return load_safetensors(path, map_location)
        elif _is_truncated_zip(head):
            raise CheckpointFileError(
                f'{path} is truncated: a zip archive (torch.save) without '
                'its directory, which is written last (an interrupted write '
                f'or download). {_AGAIN}')
        elif not head.startswith(_PICKLE):
            raise CheckpointFileError(
                f'{path} is not a checkpoint or task package (neither a '
                'torch.save file nor safetensors); give the path of one')
    try:
        return mmengine_load_from_local(filename, map_location)
    except pickle.UnpicklingError as error:
        raise CheckpointFileError(
            f'{path} is not loaded: it holds Python objects beyond tensors '
            f'and runner state ({_unpickling_problem(error)}), which could '
            'run code. Use a checkpoint of tensors, or export one with '
            'tools/export_task.py from a source you trust') from error


def _unpickling_problem(error: Exception) -> str:
    """torch's reason for refusing a pickle, without its advice to load it
    unsafely (``weights_only=False``)."""
    lines = [line.strip() for line in str(error).splitlines()
             if line.strip() and 'weights_only' not in line]
    return lines[0].rstrip('.') if lines else 'unpickling refused'


def register_local_loader() -> None:
    """Make :func:`load_from_local` mmengine's loader of local paths."""
    CheckpointLoader.register_scheme('', load_from_local, force=True)
