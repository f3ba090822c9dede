"""Convert pretrained ViT checkpoints to mmseg's ``VisionTransformer`` keys.

Two source layouts are understood:

* ``timm``: ``blocks.N.attn.qkv.weight``, ``blocks.N.norm1``, ``norm.*``...,
  read from ``.pth``/``.pt``/``.bin`` (plain tensors, ``weights_only=True``)
  or ``.safetensors``; a ``state_dict``/``model`` wrapper is unwrapped.
* ``jax``: the original Google ViT / big_vision ``.npz`` layout
  (``embedding/kernel``, ``Transformer/encoderblock_N/...``) used by VPT and
  CVPT (``ViT-B_16.npz``).

Both carry a bias in the patch-embedding conv, so the mmseg backbone must be
built with ``patch_bias=True`` (mmseg's default is ``False``), and their
LayerNorms use ``eps=1e-6`` (``norm_cfg=dict(type='LN', eps=1e-6)``).

This module only needs torch and numpy: it must not import the backbones.
"""
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, NamedTuple, Optional

import numpy as np
import torch

SRC_FORMATS = ('timm', 'jax')

# Classifier parts that a segmentation backbone does not use.
TIMM_DROPPED = ('head.', 'pre_logits.', 'fc_norm.')
JAX_DROPPED = ('head/', 'pre_logits/')

# timm name -> mmseg name, applied to the part after ``blocks.N.``.
TIMM_BLOCK_RENAMES = {
    'norm1.': 'ln1.',
    'attn.qkv.weight': 'attn.attn.in_proj_weight',
    'attn.qkv.bias': 'attn.attn.in_proj_bias',
    'attn.proj.': 'attn.attn.out_proj.',
    'norm2.': 'ln2.',
    'mlp.fc1.': 'ffn.layers.0.0.',
    'mlp.fc2.': 'ffn.layers.1.',
}
TIMM_TOP_RENAMES = {
    'patch_embed.proj.': 'patch_embed.projection.',
    'norm.': 'ln1.',
}

# Keys every converted checkpoint must hold (per layer: after ``layers.N.``).
REQUIRED_TOP = ('patch_embed.projection.weight', 'cls_token', 'pos_embed')
REQUIRED_LAYER = ('ln1.weight', 'attn.attn.in_proj_weight',
                  'attn.attn.out_proj.weight', 'ln2.weight',
                  'ffn.layers.0.0.weight', 'ffn.layers.1.weight')


class Conversion(NamedTuple):
    """Result of :func:`load_and_convert`."""
    state_dict: 'OrderedDict[str, torch.Tensor]'
    src_format: str
    dropped: List[str]


def _rename(key: str, renames: Mapping[str, str]) -> Optional[str]:
    """Apply the first rename whose source is a prefix of ``key``."""
    for old, new in renames.items():
        if key.startswith(old):
            return new + key[len(old):]
    return None


def _timm_key(key: str) -> Optional[str]:
    """mmseg name of one timm key, or None if it is not understood."""
    match = re.fullmatch(r'blocks\.(\d+)\.(.+)', key)
    if match:
        rest = _rename(match.group(2), TIMM_BLOCK_RENAMES)
        return rest and f'layers.{match.group(1)}.{rest}'
    if key in ('cls_token', 'pos_embed'):
        return key
    return _rename(key, TIMM_TOP_RENAMES)


def _check_complete(state_dict: Mapping[str, torch.Tensor], fmt: str):
    """Raise if a converted state dict misses a required key."""
    layers = {int(k.split('.')[1]) for k in state_dict
              if k.startswith('layers.')}
    expected = list(REQUIRED_TOP) + [
        f'layers.{i}.{name}' for i in range(max(layers, default=-1) + 1)
        for name in REQUIRED_LAYER]
    missing = [k for k in expected if k not in state_dict]
    if not layers or missing:
        raise ValueError(
            f'incomplete {fmt} ViT checkpoint: found {len(layers)} '
            f'transformer layers, missing converted keys {missing[:8]}')


def convert_timm_vit(state_dict: Mapping[str, torch.Tensor]
                     ) -> 'OrderedDict[str, torch.Tensor]':
    """Rename a timm ViT state dict to mmseg ViT keys (head dropped)."""
    out, unknown = OrderedDict(), []
    for key, value in state_dict.items():
        if key.startswith(TIMM_DROPPED):
            continue
        new_key = _timm_key(key)
        if new_key is None:
            unknown.append(key)
        else:
            out[new_key] = value
    if unknown:
        raise ValueError(
            f'unrecognised keys in timm ViT checkpoint: {unknown[:8]} '
            f'(expected only patch_embed.proj.*, cls_token, pos_embed, '
            f'blocks.N.{{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}}.*, '
            f'norm.* and the dropped {list(TIMM_DROPPED)})')
    _check_complete(out, 'timm')
    return out


def _jax_block(take, i: int) -> Dict[str, torch.Tensor]:
    """Convert ``Transformer/encoderblock_i`` to ``layers.i.*`` tensors."""
    src, dst = f'Transformer/encoderblock_{i}/', f'layers.{i}.'
    mha, mlp = src + 'MultiHeadDotProductAttention_1/', src + 'MlpBlock_3/'
    qkv = ('query', 'key', 'value')
    # q/k/v kernels are (D, heads, head_dim); torch Linear wants (out, in).
    in_w = [take(f'{mha}{n}/kernel') for n in qkv]
    out_kernel = take(mha + 'out/kernel')  # (heads, head_dim, D)
    return {
        dst + 'ln1.weight': take(src + 'LayerNorm_0/scale'),
        dst + 'ln1.bias': take(src + 'LayerNorm_0/bias'),
        dst + 'attn.attn.in_proj_weight':
            torch.cat([w.reshape(w.shape[0], -1).T for w in in_w]),
        dst + 'attn.attn.in_proj_bias':
            torch.cat([take(f'{mha}{n}/bias').reshape(-1) for n in qkv]),
        dst + 'attn.attn.out_proj.weight':
            out_kernel.reshape(-1, out_kernel.shape[-1]).T,
        dst + 'attn.attn.out_proj.bias': take(mha + 'out/bias'),
        dst + 'ln2.weight': take(src + 'LayerNorm_2/scale'),
        dst + 'ln2.bias': take(src + 'LayerNorm_2/bias'),
        # Dense kernels are (in, out).
        dst + 'ffn.layers.0.0.weight': take(mlp + 'Dense_0/kernel').T,
        dst + 'ffn.layers.0.0.bias': take(mlp + 'Dense_0/bias'),
        dst + 'ffn.layers.1.weight': take(mlp + 'Dense_1/kernel').T,
        dst + 'ffn.layers.1.bias': take(mlp + 'Dense_1/bias'),
    }


def convert_jax_vit(npz: Mapping[str, np.ndarray]
                    ) -> 'OrderedDict[str, torch.Tensor]':
    """Convert a JAX/big_vision ViT ``.npz`` mapping to mmseg ViT keys."""
    remaining = {k: v for k, v in npz.items() if not k.startswith(JAX_DROPPED)}
    if 'embedding/kernel' not in remaining:
        raise ValueError(
            f'not a JAX ViT checkpoint: expected "embedding/kernel" and '
            f'"Transformer/encoderblock_N/..." keys, found '
            f'{sorted(npz)[:8]}')

    def take(key):
        if key not in remaining:
            raise ValueError(f'JAX ViT checkpoint misses key {key!r}')
        return torch.from_numpy(np.asarray(remaining.pop(key)))

    num_layers = len({m.group(1) for m in (
        re.match(r'Transformer/encoderblock_(\d+)/', k) for k in remaining)
        if m})
    out = OrderedDict()
    # HWIO conv kernel -> OIHW.
    out['patch_embed.projection.weight'] = take('embedding/kernel').permute(
        3, 2, 0, 1)
    out['patch_embed.projection.bias'] = take('embedding/bias')
    out['cls_token'] = take('cls')
    out['pos_embed'] = take('Transformer/posembed_input/pos_embedding')
    for i in range(num_layers):
        out.update(_jax_block(take, i))
    out['ln1.weight'] = take('Transformer/encoder_norm/scale')
    out['ln1.bias'] = take('Transformer/encoder_norm/bias')
    if remaining:
        raise ValueError(
            f'unrecognised keys in JAX ViT checkpoint: {sorted(remaining)[:8]}'
            f' (expected embedding/*, cls, Transformer/* and the dropped '
            f'{list(JAX_DROPPED)})')
    _check_complete(out, 'jax')
    return OrderedDict((k, v.contiguous()) for k, v in out.items())


def detect_format(keys) -> str:
    """Guess the source layout (``timm`` or ``jax``) from its keys."""
    keys = list(keys)
    if any(k == 'embedding/kernel' or k.startswith('Transformer/')
           for k in keys):
        return 'jax'
    if any(k.startswith(('blocks.', 'patch_embed.proj.')) for k in keys):
        return 'timm'
    if any(k.startswith('patch_embed.projection.') for k in keys):
        raise ValueError('checkpoint is already in mmseg ViT layout (found '
                         'patch_embed.projection.*); nothing to convert')
    raise ValueError(
        f'unknown checkpoint layout: found keys {keys[:8]}; expected timm '
        f'(blocks.N.*, patch_embed.proj.*) or JAX (embedding/kernel, '
        f'Transformer/encoderblock_N/*)')


def _load_file(path: str):
    """Load ``path`` by its extension (``.npz``, ``.safetensors``, torch)."""
    if path.endswith('.npz'):
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path, device='cpu')
    return torch.load(path, map_location='cpu', weights_only=True)


def read_checkpoint(path: str) -> Mapping:
    """Read a checkpoint file into a flat mapping of tensors/arrays.

    A torch checkpoint's ``state_dict`` or ``model`` wrapper is unwrapped.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        ckpt = _load_file(path)
    except Exception as err:  # corrupt or foreign file: say which and why
        raise ValueError(
            f'cannot read {path}: expected a JAX .npz, a .safetensors file '
            f'or a torch checkpoint of plain tensors (weights_only=True); '
            f'{type(err).__name__}: {err}') from err
    for wrapper in ('state_dict', 'model'):
        if isinstance(ckpt, Mapping) and isinstance(ckpt.get(wrapper),
                                                    Mapping):
            ckpt = ckpt[wrapper]
    if not isinstance(ckpt, Mapping):
        raise ValueError(f'{path} holds a {type(ckpt).__name__}, '
                         f'expected a state dict')
    return ckpt


def load_and_convert(path: str, src_format: Optional[str] = None
                     ) -> Conversion:
    """Read ``path`` and convert it; ``src_format`` is detected if None."""
    src = read_checkpoint(path)
    fmt = src_format or detect_format(src)
    if fmt not in SRC_FORMATS:
        raise ValueError(f'unknown src_format {fmt!r}, expected one of '
                         f'{SRC_FORMATS}')
    if fmt == 'jax':
        state_dict, dropped = convert_jax_vit(src), JAX_DROPPED
    else:
        state_dict, dropped = convert_timm_vit(src), TIMM_DROPPED
    return Conversion(state_dict, fmt,
                      sorted(k for k in src if k.startswith(dropped)))
