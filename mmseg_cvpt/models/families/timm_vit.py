"""timm's ``VisionTransformer`` as a frozen-ViT family (see ``.base``): DINOv2
(with and without registers), CLIP, SigLIP, DeiT / AugReg, ... through
timm's own modules.

``vit=dict(type='TimmViT', model_name='vit_base_patch14_reg4_dinov2',
checkpoint=PATH, **kwargs)``: kwargs go to ``timm.create_model`` (never
``pretrained=True``: nothing is downloaded), ``checkpoint`` is any file
timm's ``checkpoint_filter_fn`` reads (timm / hub layout, the original
DINOv2 release, OpenAI CLIP; .pth, .bin or .safetensors), read in
``init_weights``. The model's keys are timm's under ``model.``.

timm's block: x += drop_path(ls1(attn(norm1(x)))); x += drop_path(ls2(mlp(
norm2(x)))), ls = LayerScale (identity where absent); the prefix tokens
(class token, registers; none for SigLIP) come first.
"""
from typing import Optional, Sequence, Union

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.runner.checkpoint import CheckpointLoader
from mmseg.registry import MODELS
from torch import Tensor, nn

from .base import Block, Tokens
from .mmseg_vit import check_out_indices

#: checkpoint keys of classification heads, which the frozen ViT leaves out
HEAD_KEYS = ('head.', 'attn_pool.', 'fc_norm.')


class PackedAttention:
    """timm's ``Attention`` read as the packed projections of
    ``nn.MultiheadAttention`` (``in_proj_weight`` = its qkv weight,
    ``out_proj`` = its proj), as ``..attention`` computes with them. Only
    for attention that is those projections alone (no q / k norm, output
    norm or gate)."""

    def __init__(self, attn: nn.Module):
        extra = [name for name in ('q_norm', 'k_norm', 'norm')
                 if not isinstance(getattr(attn, name, None),
                                   (nn.Identity, type(None)))]
        if getattr(attn, 'gate', None) is not None:
            extra.append('gate')
        if extra:
            raise NotImplementedError(
                f'the prompt methods compute attention from the packed q, k, '
                f'v projections; this timm attention also has {extra}, '
                'which they do not apply yet')
        self.module = attn

    @property
    def in_proj_weight(self) -> Tensor:
        return self.module.qkv.weight

    @property
    def in_proj_bias(self) -> Optional[Tensor]:
        return self.module.qkv.bias

    @property
    def out_proj(self) -> nn.Module:
        return self.module.proj

    @property
    def num_heads(self) -> int:
        return self.module.num_heads

    @property
    def embed_dim(self) -> int:
        return self.module.qkv.in_features

    @property
    def dropout(self) -> float:
        return self.module.attn_drop.p

    @property
    def training(self) -> bool:
        return self.module.training

    def parameters(self):
        return self.module.parameters()

    def buffers(self):
        return self.module.buffers()

    def state_dict(self) -> dict:
        """The weights under ``nn.MultiheadAttention``'s names."""
        state = dict(in_proj_weight=self.in_proj_weight,
                     **{f'out_proj.{k}': v
                        for k, v in self.out_proj.state_dict().items()})
        if self.in_proj_bias is not None:
            state['in_proj_bias'] = self.in_proj_bias
        return state


class TimmBlock(Block):
    """A timm ``Block``."""

    def __init__(self, block: nn.Module, with_cp: bool):
        self.module = block
        self._with_cp = with_cp

    @property
    def attention(self) -> PackedAttention:
        return PackedAttention(self.module.attn)

    @property
    def with_cp(self) -> bool:
        return self._with_cp

    @property
    def output_scale(self) -> Optional[Tensor]:
        """The layer scale of the attention branch, gamma (D,), or None."""
        return getattr(self.module.ls1, 'gamma', None)

    def self_attention(self, h: Tensor) -> Tensor:
        return self.module.attn(h)

    def attention_output(self, out: Tensor) -> Tensor:
        return self.module.drop_path1(self.module.ls1(out))

    def mlp_residual(self, x: Tensor, h: Optional[Tensor] = None) -> Tensor:
        block = self.module
        h = block.norm2(x) if h is None else h
        return x + block.drop_path2(block.ls2(block.mlp(h)))


@MODELS.register_module()
class TimmViT(BaseModule):
    """A timm ViT behind the family interface.

    Args:
        model_name (str): a timm model of the ``VisionTransformer`` class.
        checkpoint (str, optional): its weights, read by ``init_weights``.
        out_indices (int | Sequence[int]): blocks whose outputs are the
            backbone's (-1: the last). Default -1.
        final_norm (bool): the model's final norm on the last block's
            output. Default False.
        output_cls_token (bool): outputs are [patch map, class token].
        out_origin (bool): the embedded tokens are an output too.
        with_cp (bool): activation checkpointing of the blocks.
        **kwargs: ``timm.create_model``'s (``img_size``,
            ``dynamic_img_size``, ``drop_path_rate``, ``embed_dim``, ...).
    """

    def __init__(self,
                 model_name: str,
                 checkpoint: Optional[str] = None,
                 out_indices: Union[int, Sequence[int]] = -1,
                 final_norm: bool = False,
                 output_cls_token: bool = False,
                 out_origin: bool = False,
                 with_cp: bool = False,
                 **kwargs):
        super().__init__()
        import timm
        from timm.models.vision_transformer import VisionTransformer
        if kwargs.pop('pretrained', False):
            raise ValueError('TimmViT never downloads weights: give the file '
                             'as checkpoint=PATH (see docs/pretrained.md)')
        kwargs.setdefault('num_classes', 0)
        kwargs.setdefault('global_pool', '')
        self.model = timm.create_model(model_name, pretrained=False, **kwargs)
        if not isinstance(self.model, VisionTransformer):
            raise NotImplementedError(
                f'TimmViT: {model_name} is a timm {type(self.model).__name__};'
                ' the family supports timm VisionTransformer models')
        self.model_name = model_name
        self.checkpoint = checkpoint
        num_layers = len(self.model.blocks)
        self.out_indices = ([num_layers - 1] if out_indices == -1 else
                            [out_indices] if isinstance(out_indices, int) else
                            list(out_indices))
        check_out_indices(self.out_indices, num_layers)
        if output_cls_token and not self.model.has_class_token:
            raise ValueError(f'output_cls_token: {model_name} has no class '
                             'token')
        self.final_norm = final_norm
        self.output_cls_token = output_cls_token
        self.out_origin = out_origin
        self.blocks = [TimmBlock(block, with_cp)
                       for block in self.model.blocks]
        self.pretrained_keys = frozenset(self.state_dict())

    @property
    def embed_dims(self) -> int:
        return self.model.embed_dim

    @property
    def patch_size(self) -> int:
        return self.model.patch_embed.patch_size[0]

    @property
    def num_prefix_tokens(self) -> int:
        return self.model.num_prefix_tokens

    def embed(self, images: Tensor) -> Tokens:
        """timm's patch embedding, prefix tokens and position embedding."""
        model = self.model
        x = model.norm_pre(model.patch_drop(
            model._pos_embed(model.patch_embed(images))))
        hw_shape = tuple(model.patch_embed.dynamic_feat_size(
            images.shape[-2:]))
        return Tokens(x, self.num_prefix_tokens, 0, hw_shape)

    def final_normed(self, x: Tensor) -> Tensor:
        return self.model.norm(x) if self.final_norm else x

    def init_weights(self) -> None:
        """timm's own initialisation (the weights come from ``load_pretrained``
        when there is a checkpoint)."""
        self.model.init_weights()

    # ---- checkpoints ------------------------------------------------------
    def checkpoint_weights(self, checkpoint: dict,
                           prefix: Optional[str] = None) -> dict:
        """A checkpoint's ViT tensors in this family's keys: timm's
        ``checkpoint_filter_fn`` (other layouts, position embedding resized
        to the model's), classification heads left out."""
        from timm.models.vision_transformer import checkpoint_filter_fn
        state = checkpoint.get('state_dict', checkpoint)
        if prefix:
            state = {k[len(prefix):]: v for k, v in state.items()
                     if k.startswith(prefix)}
        if any(k.startswith('model.') for k in state):  # ours: model.blocks
            state = {k[len('model.'):]: v for k, v in state.items()
                     if k.startswith('model.')}
        state = checkpoint_filter_fn(
            {k: v for k, v in state.items() if isinstance(v, Tensor)},
            self.model)
        return {f'model.{k}': v for k, v in state.items()
                if not k.startswith(HEAD_KEYS)}

    def load_pretrained(self, checkpoint: str,
                        prefix: Optional[str] = None) -> None:
        """Load a checkpoint strictly: every ViT weight, of its shape."""
        state = self.checkpoint_weights(
            CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu'),
            prefix)
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        misfit = sorted(k for k in state if k in own
                        and state[k].shape != own[k].shape)
        extra = sorted(set(state) - set(own))
        problems = [f'{what}: {keys[:5]}' for keys, what in (
            (missing, 'lacks ViT weights'),
            (misfit, 'has weights of another shape'),
            (extra, 'has weights this model has no place for')) if keys]
        if problems:
            raise KeyError(
                f'{checkpoint} does not fit the timm model {self.model_name} '
                f'({"; ".join(problems)}): give the checkpoint of this '
                'architecture (its timm model name, img_size, ...)')
        with torch.no_grad():
            self.load_state_dict(state)
        print_log(f'Loaded {len(state)} tensors of {self.model_name} from '
                  f'{checkpoint}', logger='current')
