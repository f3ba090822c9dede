"""Config values that open a file or a URL, kept out of configs read from
checkpoints and task packages.

A config read from a checkpoint is data (see ``.config_data``), but some of
its values name files that the model's builders and initialisers open:
mmseg's losses read a string ``class_weight`` with ``np.load`` or
``mmengine.fileio.load``, which fetches ``http://`` URLs and unpickles
``.pkl`` files, while the model is built; a ``Pretrained`` ``init_cfg``, a
module's ``pretrained`` and ``TimmViT``'s ``checkpoint`` are read by
``init_weights``. :data:`FILE_ARGUMENTS` lists them with a decision each
(``tools/analysis/file_arguments.py`` finds them in the shipped configs and
the modules they build, and a test fails on one without a decision):

* ``REFUSE``: the model needs the value, and it would be opened while the
  model is built: the config is refused, naming the key and its value;
* ``DROP``: weights that a checkpoint's model never needs (its tensors come
  from the checkpoint, the frozen ViT's from the base checkpoint its own,
  already guarded, record names): the value is removed with a warning.

A timm model name is checked by ``TimmViT`` itself (names beyond timm's
registry, such as ``hf-hub:``, are refused in any config).
"""
import logging
from typing import Iterator, List, Tuple

from mmengine.logging import print_log

REFUSE = 'refuse'
DROP = 'drop'

#: argument name -> decision, for its string values anywhere in a config
FILE_ARGUMENTS = {
    # mmseg's losses: np.load (.npy) or mmengine.fileio.load (URLs, .pkl
    # unpickled, .json, .yaml) while the model is built
    'class_weight': REFUSE,
    # EncoderDecoder's and mmpretrain's models' pretrained weights
    'pretrained': DROP,
    # Pretrained init_cfg (mmengine's initialiser), TimmViT's weights file
    'checkpoint': DROP,
    # DA-VPT's scene categories (GuidedEncoderDecoder), read in training
    'scene_file': DROP,
}


class FileArgumentError(ValueError):
    """A config read from a file names a file or URL to open."""


def file_values(cfg, where: str = '') -> Iterator[Tuple[str, str, str]]:
    """``(dotted key, value, decision)`` of every string value of a listed
    argument in ``cfg`` (dicts and lists searched)."""
    if isinstance(cfg, dict):
        items = cfg.items()
    elif isinstance(cfg, (list, tuple)):
        items = ((str(i), item) for i, item in enumerate(cfg))
    else:
        return
    for key, value in items:
        if isinstance(value, str) and key in FILE_ARGUMENTS:
            yield f'{where}{key}', value, FILE_ARGUMENTS[key]
        yield from file_values(value, f'{where}{key}.')


def _child(container, key: str):
    return container[int(key)] if isinstance(container, (list, tuple)) \
        else container[key]


def _without(container, key: str):
    """``container`` without ``key`` (a dict's key or a sequence's index):
    dicts and lists changed in place, a tuple copied."""
    if isinstance(container, dict):
        del container[key]
        return container
    items = [item for i, item in enumerate(container) if i != int(key)]
    if isinstance(container, list):
        container[:] = items
        return container
    return tuple(items)


def _remove(cfg: dict, dotted: str) -> None:
    """Delete ``dotted`` (list indices as numbers) from ``cfg``; an
    ``init_cfg`` goes as a whole with its checkpoint (one of a list of
    them: that one)."""
    keys = dotted.split('.')
    if 'init_cfg' in keys:
        end = len(keys) - keys[::-1].index('init_cfg')
        keys = keys[:end + (end < len(keys) - 1 and keys[end].isdigit())]
    parents = [cfg]
    for key in keys[:-1]:
        parents.append(_child(parents[-1], key))
    changed = _without(parents[-1], keys[-1])
    if changed is not parents[-1]:  # a tuple: put its copy in its place
        grandparent, key = parents[-2], keys[-2]
        if isinstance(grandparent, dict):
            grandparent[key] = changed
        else:
            grandparent[int(key)] = changed


def strip_file_arguments(cfg_dict: dict, source: str) -> List[str]:
    """Make a config read from ``source`` open nothing: a value to refuse
    raises :class:`FileArgumentError` naming the key and the value; values
    to drop are removed (one warning names them all). Returns the dropped
    keys."""
    found = list(file_values(cfg_dict))
    refused = [(key, value) for key, value, decision in found
               if decision == REFUSE]
    if refused:
        key, value = refused[0]
        raise FileArgumentError(
            f'{source}: its config sets {key}={value!r}, a file or URL that '
            'building the model would open; a config read from a checkpoint '
            'opens no file or URL (it could run code or reach the network). '
            'Write the values into the config (e.g. a list of class weights) '
            'and pass it with --config CONFIG')
    dropped = [key for key, _, _ in found]
    for key in reversed(dropped):  # list indices stay valid
        _remove(cfg_dict, key)
    if dropped:
        values = ', '.join(f'{key}={value!r}' for key, value, _ in found)
        print_log(
            f'{source}: not opened: {values} (a config read from '
            'a checkpoint opens no file or URL; the weights come from the '
            'checkpoint and its base record)',
            logger='current', level=logging.WARNING)
    return dropped
