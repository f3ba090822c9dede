"""Refuse checkpoints that do not fit the model they are loaded into.

mmengine's Runner loads ``load_from`` (and so the checkpoint of
``tools/test.py``) with ``strict=False``: tensors of another shape, or
missing ones, are only logged, and the run goes on with random weights where
trained ones should be, e.g. a test reports a meaningless mIoU and exits 0.
:func:`check_loaded_state` turns that into an error naming the keys.

Methods can have tensors of the same shapes (VPT and CVPT with shared
weights): our checkpoints record the model's identity (:func:`model_identity`,
``meta['model_identity']``), and :func:`check_model_identity` refuses one of
another method, naming both.
"""
import re
from typing import Callable, List, Set

from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from torch import nn

from ..models.backbones import EXTRA_STATE_KEY, find_prompted_backbone

#: where a checkpoint's meta records the identity of its model
IDENTITY_KEY = 'model_identity'

#: how many keys an error or a log line names
NUM_KEYS_SHOWN = 5


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DDP-like wrappers and test-time augmentation."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def model_identity(model: nn.Module) -> dict:
    """What makes a model's method, beyond its tensors' shapes: the model's
    type, its backbone's type and the backbone's ``structure()`` (a plain
    mmseg / mmpretrain backbone has none)."""
    model = unwrap_model(model)
    try:
        backbone = find_prompted_backbone(model)
        structure = backbone.structure()
    except TypeError:
        backbone, structure = getattr(model, 'backbone', None), {}
    return dict(model=type(model).__name__, backbone=type(backbone).__name__,
                structure=structure)


def describe_identity(identity) -> str:
    """'VPTViT (num_prompts=8, ...; EncoderDecoder)'."""
    if not isinstance(identity, dict):
        return repr(identity)
    structure = identity.get('structure')
    args = [f'{key}={value!r}' for key, value in structure.items()] \
        if isinstance(structure, dict) else [repr(structure)]
    return f'{identity.get("backbone")} ({", ".join(args)}; ' \
        f'{identity.get("model")})'


def check_model_identity(model: nn.Module, checkpoint: dict,
                         source: str = 'the checkpoint') -> None:
    """Raise if ``checkpoint`` records a model identity other than
    ``model``'s. Checkpoints without one (plain ViT weights, older
    checkpoints) pass: the tensors' check still applies to them.

    Raises:
        RuntimeError: naming both identities.
    """
    meta = checkpoint.get('meta')
    recorded = meta.get(IDENTITY_KEY) if isinstance(meta, dict) else None
    if recorded is None:
        return
    own = model_identity(model)
    if recorded != own:
        raise RuntimeError(
            f'{source} is a {describe_identity(recorded)} model, the config '
            f'builds {describe_identity(own)}: its tensors would be used by '
            'another method. Use the config it was trained with; to start '
            'a new training from the weights of another method on purpose, '
            "load its plain state dict (torch.save(ckpt['state_dict'], "
            'PATH)).')


def new_weight_rule(model: nn.Module) -> Callable[[str], bool]:
    """Tell whether a key is a weight a new training initialises itself.

    Those are the heads and necks (everything outside ``backbone.``) and the
    modules a prompt method adds to a backbone (prompts, own cross-attention
    weights: what its ``is_pretrained_key`` does not claim). The rest of the
    backbone is the pretrained architecture.
    """
    prompted = [(name + '.', module) for name, module in model.named_modules()
                if name and hasattr(module, 'is_pretrained_key')]

    def is_new(key: str) -> bool:
        for prefix, module in prompted:
            if key.startswith(prefix):
                return not module.is_pretrained_key(key[len(prefix):])
        return not key.startswith('backbone.')

    return is_new


def restored_keys(model: nn.Module, state_dict: dict) -> Set[str]:
    """Frozen ViT weights a tuned-only ``state_dict`` leaves to the backbone:
    those of every prompted backbone whose frozen-base record
    (``_extra_state``) the state dict carries and whose frozen weights it
    leaves out altogether. The backbone restores them from its base
    checkpoint while loading, or raises ``FrozenBaseError`` naming it. A
    state dict that lacks only some of them is broken, not tuned-only."""
    keys = set()
    for name, module in model.named_modules():
        prefix = f'{name}.' if name else ''
        if not (hasattr(module, 'frozen_keys')
                and prefix + EXTRA_STATE_KEY in state_dict):
            continue
        frozen = {prefix + key for key in module.frozen_keys()}
        if frozen.isdisjoint(state_dict):
            keys |= frozen
    return keys


def checkpoint_sized_keys(model: nn.Module) -> Set[str]:
    """Keys whose shape the checkpoint decides: the buffers a module lists
    in ``checkpoint_sized_buffers`` (it resizes them when loading, e.g.
    DA-VPT's per-class buffers) and the backbones' ``_extra_state`` records
    (variable-length encoded text, not weights)."""
    return {
        f'{name}.{buffer}' if name else buffer
        for name, module in model.named_modules()
        for buffer in (*getattr(module, 'checkpoint_sized_buffers', ()),
                       *((EXTRA_STATE_KEY, )
                         if hasattr(module, 'frozen_keys') else ()))
    }


def key_examples(keys: List[str]) -> str:
    """At most ``NUM_KEYS_SHOWN`` of ``keys``, and how many more there are:
    how our errors and log lines name keys."""
    more = len(keys) - NUM_KEYS_SHOWN
    return ', '.join(keys[:NUM_KEYS_SHOWN]) + (f' (+{more} more)'
                                               if more > 0 else '')


def check_loaded_state(model: nn.Module,
                       state_dict: dict,
                       allow_new: bool = True) -> None:
    """Raise if ``state_dict`` does not fit ``model``'s architecture.

    Errors: tensors whose shape differs from the model's (except buffers
    sized by the checkpoint, ``checkpoint_sized_keys``); weights of the
    backbone's pretrained architecture that the checkpoint lacks; backbone
    weights the model has no place for. Frozen ViT weights that a tuned-only
    checkpoint leaves to the backbone (``restored_keys``) are not missing.
    With ``allow_new`` (a new training
    from ``load_from``) heads, necks and prompt modules may be missing and
    head weights may be extra; both are logged. Without it (testing) every
    weight must be there and nothing may be extra.

    Raises:
        RuntimeError: naming the first few keys of each problem.
    """
    model = unwrap_model(model)
    state_dict = {
        re.sub(r'^module\.', '', key): value
        for key, value in state_dict.items()
    }
    own = model.state_dict()
    is_new = new_weight_rule(model)
    resizable = checkpoint_sized_keys(model)
    mismatched = [
        f'{key} {tuple(value.shape)} (model: {tuple(own[key].shape)})'
        for key, value in state_dict.items()
        if key in own and key not in resizable
        and getattr(value, 'shape', None) is not None
        and value.shape != own[key].shape
    ]
    restored = restored_keys(model, state_dict)
    missing = [
        key for key in own if key not in state_dict and key not in restored
    ]
    extra = [key for key in state_dict if key not in own]
    tolerated = [key for key in missing if allow_new and is_new(key)] + [
        key for key in extra
        if allow_new and not key.startswith('backbone.')
    ]
    problems = [(mismatched, 'tensors of another shape'),
                ([k for k in missing if k not in tolerated],
                 'weights missing from the checkpoint'),
                ([k for k in extra if k not in tolerated],
                 'weights the model has no place for')]
    problems = [f'{len(keys)} {what}: {key_examples(keys)}'
                for keys, what in problems if keys]
    if problems:
        raise RuntimeError(
            'The checkpoint does not fit the model: ' + '; '.join(problems) +
            '. Use the config the checkpoint was trained with (embed_dims, '
            'num_layers, num_prompts, prompt_depth, num_classes, ...), or a '
            'checkpoint of this architecture.')
    if tolerated:
        print_log(
            f'Starting from a checkpoint without {len(tolerated)} weights of '
            'heads or prompt modules (they keep their initialisation) or '
            f'with head weights this model does not use: '
            f'{key_examples(tolerated)}',
            logger='current')
