"""mmseg's ``VisionTransformer`` as a frozen-ViT family (see ``.base``).

Same constructor arguments, state-dict keys and outputs as mmseg's ViT; its
own freezing is off (the prompted core freezes) and checkpoints load
strictly (``load_pretrained``).
"""
import math
from numbers import Integral
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader
from mmseg.models.backbones import VisionTransformer
from mmseg.models.backbones.vit import TransformerEncoderLayer
from mmseg.registry import MODELS
from torch import Tensor, nn

from ..attention import MultiheadAttentionView
from .base import Block, FrozenViTFamily, Tokens

# a ViT weight every mmseg-layout checkpoint has: finds a checkpoint's prefix
ANCHOR_KEY = 'patch_embed.projection.weight'


def check_out_indices(out_indices: Sequence[int], num_layers: int) -> None:
    """Every index must name a layer: 0 <= i < num_layers."""
    bad = [i for i in out_indices
           if not (isinstance(i, Integral) and 0 <= i < num_layers)]
    if bad:
        raise ValueError(
            f'out_indices {tuple(out_indices)} names layers {bad} that a '
            f'{num_layers}-layer ViT does not have: use indices in '
            f'0..{num_layers - 1} (out_indices=-1 alone selects the last '
            'layer)')


class MMSegBlock(Block):
    """An mmseg ``TransformerEncoderLayer``: attention ``attn.attn`` (an
    ``nn.MultiheadAttention``), projection dropout and drop-path after it,
    ``ffn`` (fc1, activation, dropout, fc2, dropout; drop-path and the
    residual)."""

    def __init__(self, layer: TransformerEncoderLayer):
        self.module = layer
        self.attention = MultiheadAttentionView(layer.attn.attn)
        (fc1, self._activation, self._dropout1), fc2, self._dropout2 = \
            layer.ffn.layers
        self._linears = dict(fc1=fc1, fc2=fc2)

    @property
    def with_cp(self) -> bool:
        return self.module.with_cp

    def attention_output(self, out: Tensor) -> Tensor:
        attn = self.module.attn
        return attn.dropout_layer(attn.proj_drop(out))

    @property
    def mlp_linears(self) -> Dict[str, nn.Linear]:
        return self._linears

    def mlp(self, h: Tensor) -> Tensor:
        if not self.mlp_hooked:
            return self.module.ffn.layers(h)
        h = self._dropout1(self._activation(self.linear('fc1', h)))
        return self._dropout2(self.linear('fc2', h))

    def mlp_output(self, out: Tensor) -> Tensor:
        return self.module.ffn.dropout_layer(out)


@MODELS.register_module()
class MMSegViT(VisionTransformer, FrozenViTFamily):
    """mmseg's ViT behind the family interface.

    Args: those of mmseg's ``VisionTransformer`` but ``frozen_exclude``,
    ``pretrained`` and ``init_cfg`` (the prompted core loads weights: its
    ``init_cfg`` names the checkpoint).
    """

    checkpoint = None  # the weights come from the backbone's init_cfg

    def __init__(self, **kwargs):
        super().__init__(frozen_exclude=['all'], **kwargs)
        check_out_indices(self.out_indices, len(self.layers))
        self.blocks: List[MMSegBlock] = [
            MMSegBlock(layer) for layer in self.layers]
        self.pretrained_keys = frozenset(self.state_dict())
        self.check_family()

    @property
    def embed_dims(self) -> int:
        return self.cls_token.shape[-1]

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.with_cls_token)

    def embed(self, images: Tensor) -> Tokens:
        """Patch embedding + class token + (interpolated) position
        embedding (+ pre-norm)."""
        x, hw_shape = self.patch_embed(images)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = self.drop_after_pos(x + self.pos_embed_for(hw_shape))
        if not self.with_cls_token:
            x = x[:, 1:]
        if self.pre_norm:
            x = self.pre_ln(x)
        return Tokens(x, self.num_prefix_tokens, 0, tuple(hw_shape))

    def pos_embed_for(self, hw_shape: Sequence[int]) -> Tensor:
        """The position embedding of an h x w patch grid (class slot
        first): the model's, resized from its ``img_size`` grid where the
        number of patches differs (as mmseg's ViT does)."""
        grid = (self.img_size[0] // self.patch_size,
                self.img_size[1] // self.patch_size)
        if hw_shape[0] * hw_shape[1] + 1 == self.pos_embed.shape[1]:
            return self.pos_embed
        return self.resize_pos_embed(self.pos_embed, hw_shape, grid,
                                     self.interpolate_mode)

    def final_normed(self, x: Tensor) -> Tensor:
        return self.norm1(x) if self.final_norm else x

    def checkpoint_weights(self, state_dict: dict,
                           prefix: Optional[str] = None) -> dict:
        """A checkpoint's ViT tensors in this family's keys: those under
        ``prefix`` when the keys have it, else under the prefix of
        ``ANCHOR_KEY``; the position embedding resized to the model's."""
        if not (prefix and any(k.startswith(prefix) for k in state_dict)):
            prefix = next((k[:-len(ANCHOR_KEY)]
                           for k in state_dict if k.endswith(ANCHOR_KEY)), '')
        state = {k[len(prefix):]: v for k, v in state_dict.items()
                 if k.startswith(prefix) and isinstance(v, Tensor)}
        self.resize_pos_embed_of(state)
        return state

    def resize_pos_embed_of(self, state_dict: dict) -> None:
        """A checkpoint's ``pos_embed`` resized to this model's grid."""
        pos_embed = state_dict.get('pos_embed')
        if pos_embed is None or pos_embed.shape == self.pos_embed.shape:
            return
        old_size = int(math.sqrt(pos_embed.shape[1] - 1))
        new_size = (self.img_size[0] // self.patch_size,
                    self.img_size[1] // self.patch_size)
        state_dict['pos_embed'] = self.resize_pos_embed(
            pos_embed, new_size, (old_size, old_size), self.interpolate_mode)

    def load_pretrained(self, checkpoint: str,
                        prefix: Optional[str] = None) -> None:
        """Load an mmseg-layout ViT checkpoint; missing ViT weights raise.

        ``prefix`` (e.g. 'backbone.') selects the backbone of a whole-model
        checkpoint. timm / JAX checkpoints are converted first with
        ``tools/model_converters/vit2mmseg.py``.
        """
        ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
        state_dict = ckpt.get('state_dict', ckpt)
        if prefix:
            state_dict = {
                k[len(prefix):]: v
                for k, v in state_dict.items() if k.startswith(prefix)
            }
        self.resize_pos_embed_of(state_dict)
        result = self.load_state_dict(state_dict, strict=False)
        if result.missing_keys:
            raise KeyError(
                f'{checkpoint} lacks {len(result.missing_keys)} ViT weights, '
                f'e.g. {result.missing_keys[:5]}; its keys look like '
                f'{list(state_dict)[:5]}. Convert timm or JAX checkpoints '
                'to the mmseg layout with '
                'tools/model_converters/vit2mmseg.py, and pass '
                "init_cfg=dict(..., prefix='backbone.') for a whole-model "
                'checkpoint.')
        misfit = [k for k in result.unexpected_keys
                  if k.startswith(('patch_embed.', 'layers.'))]
        if misfit:
            raise KeyError(
                f'{checkpoint} has ViT weights this backbone has no place '
                f'for: {misfit[:5]}. Match the architecture to the checkpoint '
                '(patch_bias=True for timm / JAX weights, num_layers, ...).')
        print_log(
            f'Loaded {len(state_dict) - len(result.unexpected_keys)} tensors '
            f'from {checkpoint}; unexpected (ignored): '
            f'{result.unexpected_keys}',
            logger='current')
