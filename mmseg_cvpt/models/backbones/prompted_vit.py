"""The shared core of the prompted backbones: a frozen mmseg ViT plus prompts.

``PromptedVisionTransformer`` is mmseg's ``VisionTransformer`` (same
constructor arguments, same state-dict keys, so any mmseg-layout checkpoint
loads unchanged) with

* prompts from a pluggable provider (``prompt_cfg``, see ``..prompts``),
* everything but the prompts frozen, and the frozen parts kept in eval mode
  while training (no dropout / drop-path on them),
* strict pretrained loading: backbone weights missing from a checkpoint are
  an error, the new modules (prompts, ...) are expected to be missing,
* attention through ``scaled_dot_product_attention`` with the blocks' own
  weights.

A method subclasses it and implements ``forward_layer`` (how layer i uses its
prompts) and ``block_without_prompts`` (the same layer in the prompt-free
model, with the tokens that would query its prompts), and names in
``prompt_attention`` the attention whose keys the prompts become. From these
the core measures the statistics of the vectors a prompt meets inside
attention (``prompt_query_statistics``, ``calibrate_prompts``), which BPT's
whitened prompt providers are built on.
"""
import math
from contextlib import contextmanager
from numbers import Integral
from typing import (Dict, Iterable, Iterator, List, Optional, Sequence,
                    Tuple, Union)

import torch
from mmengine.dist import all_reduce
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader
from mmseg.models.backbones import VisionTransformer
from mmseg.models.backbones.vit import TransformerEncoderLayer
from mmseg.registry import MODELS
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..attention import query_key_vectors, self_attention
from ..prompts import PromptProvider
from .frozen_base import EXTRA_STATE_KEY, FrozenBaseMixin, local_path


def self_attention_branch(layer: TransformerEncoderLayer, x: Tensor) -> Tensor:
    """The attention residual branch of a ViT block: SA(LN1(x))."""
    attn = layer.attn
    out = self_attention(attn.attn, layer.norm1(x))
    return attn.dropout_layer(attn.proj_drop(out))


def mlp_residual(layer: TransformerEncoderLayer, x: Tensor) -> Tensor:
    """x + MLP(LN2(x))."""
    return layer.ffn(layer.norm2(x), identity=x)


def vit_block(layer: TransformerEncoderLayer, x: Tensor) -> Tensor:
    """One pre-norm ViT block: x += SA(LN1(x)); x += MLP(LN2(x))."""
    return mlp_residual(layer, x + self_attention_branch(layer, x))


def parse_num_prompts(num_prompts) -> int:
    if (isinstance(num_prompts, bool) or not isinstance(num_prompts, Integral)
            or num_prompts < 0):
        raise ValueError('num_prompts must be a non-negative integer (0 = '
                         f'no prompts), got {num_prompts!r}')
    return int(num_prompts)


def parse_prompt_depth(prompt_depth: Union[str, int], num_layers: int) -> int:
    """'shallow' -> 1, 'deep' -> num_layers, k -> k prompted layers."""
    if prompt_depth == 'shallow':
        return 1
    if prompt_depth == 'deep':
        return num_layers
    if (isinstance(prompt_depth, Integral)
            and not isinstance(prompt_depth, bool)
            and 1 <= prompt_depth <= num_layers):
        return int(prompt_depth)
    raise ValueError(
        "prompt_depth must be 'shallow', 'deep' or the number of prompted "
        f'layers between 1 and num_layers={num_layers}, got {prompt_depth!r}')


def find_prompted_backbone(model: nn.Module) -> 'PromptedVisionTransformer':
    """The prompted ViT inside a (wrapped) segmentor or classifier."""
    for module in model.modules():
        if isinstance(module, PromptedVisionTransformer):
            return module
    raise TypeError(
        f'{type(model).__name__} has no prompted backbone (VPTViT, CVPTViT)')


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


class PromptedVisionTransformer(FrozenBaseMixin, VisionTransformer):
    """Frozen mmseg ViT whose layers receive prompts.

    Its state dict records where the frozen weights come from, and a state
    dict without them is completed from there (``FrozenBaseMixin``).

    Args:
        num_prompts (int): prompts per layer, m. 0 gives the plain (frozen)
            ViT.
        prompt_depth (str | int): 'deep' (every layer has its prompts),
            'shallow' (only layer 0) or the number k of leading layers.
        prompt_cfg (dict): the prompt provider; ``num_layers``,
            ``num_prompts`` and ``embed_dims`` are filled in.
        prompt_dropout (float): dropout on the prompts.
        frozen_exclude (Sequence[str]): parameters whose names contain one of
            these strings stay trainable too ('all' trains everything).
            Prompts (and other modules a method adds) are always trainable.
        frozen_eval (bool): keep modules without trainable parameters in
            eval mode while training. Default True.
        guidance_cfg (dict, optional): DA-VPT's guidance of the prompts,
            e.g. ``dict(type='ProxyGuidance', num_guided=10)`` (see
            ``..guidance``); ``num_layers``, ``num_prompted``,
            ``num_prompts`` and ``embed_dims`` are filled in.
        **kwargs: the arguments of mmseg's ``VisionTransformer``.
    """

    default_prompt_cfg = dict(type='LayerPrompts', init='xavier')

    def __init__(self,
                 num_prompts: int = 0,
                 prompt_depth: Union[str, int] = 'deep',
                 prompt_cfg: Optional[dict] = None,
                 prompt_dropout: float = 0.1,
                 frozen_exclude: Sequence[str] = (),
                 frozen_eval: bool = True,
                 guidance_cfg: Optional[dict] = None,
                 **kwargs):
        num_prompts = parse_num_prompts(num_prompts)
        if not 0. <= prompt_dropout < 1.:
            raise ValueError(
                f'prompt_dropout must be in [0, 1), got {prompt_dropout!r}')
        super().__init__(frozen_exclude=['all'], **kwargs)
        check_out_indices(self.out_indices, len(self.layers))
        self.pretrained_keys = frozenset(self.state_dict()) - {
            EXTRA_STATE_KEY}
        self.num_prompts = num_prompts
        self.prompt_depth = parse_prompt_depth(prompt_depth, len(self.layers))
        self.prompts = self._build_prompts(prompt_cfg)
        self.prompt_dropout = nn.Dropout(prompt_dropout)
        self.trainable_patterns = tuple(frozen_exclude)
        self.frozen_eval = frozen_eval
        self.guidance = self._build_guidance(guidance_cfg)
        # layer index -> what the guidance reads of the last training forward
        self.guidance_records: Dict[int, Dict[str, Tensor]] = {}

    def _build_prompts(self, prompt_cfg: Optional[dict]) -> Optional[nn.Module]:
        if self.num_prompts == 0:
            return None
        cfg = dict(prompt_cfg or self.default_prompt_cfg)
        for key in ('num_layers', 'num_prompts', 'embed_dims'):
            if key in cfg:
                raise ValueError(
                    f'prompt_cfg must not set {key!r}: the backbone fills it '
                    '(use num_prompts / prompt_depth / embed_dims)')
        provider = MODELS.get(cfg.get('type'))
        if isinstance(provider, type) and issubclass(provider, PromptProvider):
            cfg.setdefault('init', self.default_prompt_cfg['init'])
            cfg.setdefault('patch_size', self.patch_size)
        return MODELS.build(
            dict(
                cfg,
                num_layers=self.prompt_depth,
                num_prompts=self.num_prompts,
                embed_dims=self.cls_token.shape[-1]))

    def _build_guidance(self,
                        guidance_cfg: Optional[dict]) -> Optional[nn.Module]:
        if guidance_cfg is None:
            return None
        if self.prompts is None:
            raise ValueError('guidance_cfg needs prompts: num_prompts is 0')
        if not self.with_cls_token:
            raise ValueError('guidance_cfg needs the class token '
                             '(with_cls_token=True)')
        return MODELS.build(
            dict(
                guidance_cfg,
                num_layers=len(self.layers),
                num_prompted=self.prompt_depth,
                num_prompts=self.num_prompts,
                embed_dims=self.cls_token.shape[-1]))

    # ---- identity -------------------------------------------------------
    def structure(self) -> dict:
        """The arguments that decide how the tensors are used, beyond their
        shapes: part of the model's identity that checkpoints record
        (``engine.loading.model_identity``). A method adds its own; ways to
        compute the same outputs (VPT's ``prompt_form``) and initialisations
        are not structure."""
        return dict(
            num_prompts=self.num_prompts,
            prompt_depth=self.prompt_depth,
            prompts=type(self.prompts).__name__ if self.prompts else None,
            guidance=type(self.guidance).__name__ if self.guidance else None)

    # ---- freezing -------------------------------------------------------
    def freeze_pretrained(self) -> None:
        """Freeze the pretrained ViT; log trainable / total parameters.

        Called by each method at the end of its constructor, once all of its
        modules exist; ``is_frozen`` decides for each parameter.
        """
        for name, param in self.named_parameters():
            param.requires_grad = not self.is_frozen(name)
        trainable = sum(p.numel() for p in self.parameters()
                        if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        provider = f', {type(self.prompts).__name__}' if self.prompts else ''
        print_log(
            f'{type(self).__name__}: {trainable:,} trainable of {total:,} '
            f'parameters ({self.num_prompts} prompts x {self.prompt_depth} '
            f'layers{provider})',
            logger='current')

    def is_frozen(self, name: str) -> bool:
        """Pretrained parameters are frozen unless ``frozen_exclude`` names
        them; the modules a method adds are trainable."""
        if not self.is_pretrained_key(name):
            return False
        return not ('all' in self.trainable_patterns
                    or any(p in name for p in self.trainable_patterns))

    def is_pretrained_key(self, key: str) -> bool:
        """Whether ``key`` belongs to mmseg's ViT (else: a module we added)."""
        return key in self.pretrained_keys

    def train(self, mode: bool = True):
        """Train mode for modules that learn; frozen ones stay in eval mode."""
        super().train(mode)
        if mode and self.frozen_eval:
            for module in self.children():
                learns = any(p.requires_grad for p in module.parameters())
                if not learns and module is not self.prompt_dropout:
                    module.eval()
        return self

    # ---- pretrained weights ---------------------------------------------
    def init_weights(self):
        if not (isinstance(self.init_cfg, dict)
                and self.init_cfg.get('type') == 'Pretrained'):
            super().init_weights()
            return
        self.load_pretrained(self.init_cfg['checkpoint'],
                             self.init_cfg.get('prefix'))

    def load_pretrained(self, checkpoint: str, prefix: Optional[str] = None):
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
        self._resize_pos_embed_of(state_dict)
        result = self.load_state_dict(state_dict, strict=False)
        missing = [k for k in result.missing_keys if self.is_pretrained_key(k)]
        if missing:
            raise KeyError(
                f'{checkpoint} lacks {len(missing)} ViT weights, e.g. '
                f'{missing[:5]}; its keys look like {list(state_dict)[:5]}. '
                'Convert timm or JAX checkpoints to the mmseg layout with '
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
        new = sorted(set(result.missing_keys) - set(missing))
        if self.frozen_base is None:  # else: the checkpoint's own base
            self.frozen_base = dict(checkpoint=local_path(checkpoint),
                                    prefix=prefix)
        print_log(
            f'Loaded {len(state_dict) - len(result.unexpected_keys)} tensors '
            f'from {checkpoint}; newly initialised: {new}; unexpected '
            f'(ignored): {result.unexpected_keys}',
            logger='current')
        self.after_pretrained_loaded()

    def _resize_pos_embed_of(self, state_dict: dict) -> None:
        pos_embed = state_dict.get('pos_embed')
        if pos_embed is None or pos_embed.shape == self.pos_embed.shape:
            return
        old_size = int(math.sqrt(pos_embed.shape[1] - 1))
        new_size = (self.img_size[0] // self.patch_size,
                    self.img_size[1] // self.patch_size)
        state_dict['pos_embed'] = self.resize_pos_embed(
            pos_embed, new_size, (old_size, old_size), self.interpolate_mode)

    def after_pretrained_loaded(self) -> None:
        """Hook for modules initialised from the loaded weights."""

    # ---- forward ----------------------------------------------------------
    def layer_prompts(self) -> List[Tensor]:
        """The (dropped-out) prompts of each prompted layer, (m, D) each."""
        if self.prompts is None:
            return []
        return list(self.prompt_dropout(self.prompts()).unbind(0))

    def forward_layer(self, index: int, layer: TransformerEncoderLayer,
                      x: Tensor, prompts: List[Tensor]) -> Tensor:
        """Layer ``index`` applied to the tokens x with the layers' prompts."""
        raise NotImplementedError

    def block_without_prompts(self, index: int,
                              layer: TransformerEncoderLayer,
                              x: Tensor) -> Tuple[Tensor, Tensor]:
        """Layer ``index`` of the prompt-free model: ``(u, block(x))`` with u
        the tokens that query the layer's prompts in the prompted model."""
        raise NotImplementedError

    def prompt_attention(self, index: int) -> nn.MultiheadAttention:
        """The attention whose keys and values layer ``index``'s prompts
        become: the block's own self-attention."""
        return self.layers[index].attn.attn

    # ---- statistics of what the prompts meet (BPT) ----------------------
    @contextmanager
    def evaluating(self):
        """Eval mode (no dropout anywhere) and no gradients, then back."""
        was_training = self.training
        self.train(False)
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)

    def prompt_query_vectors(self,
                             images: Tensor) -> Iterator[Tuple[int, Tensor]]:
        """``(l, z)`` for each prompted layer l, in the prompt-free model.

        z = W_k^T (W_q u + b_q) (``query_key_vectors``) for every token u
        (class token and patches of every image) that queries layer l's
        prompts, as a (tokens, D) tensor: a prompt p meets these through
        the attention logits z^T p.
        """
        for index, _, queries in self.prompt_free_layers(images):
            yield index, query_key_vectors(self.prompt_attention(index),
                                           queries.flatten(0, -2))

    def prompt_free_layers(
            self, images: Tensor) -> Iterator[Tuple[int, Tensor, Tensor]]:
        """``(l, x_l, u_l)`` for each prompted layer l of the prompt-free
        model: its input tokens and the tokens that query its prompts."""
        x, _ = self.embed(images)
        for index, layer in enumerate(self.layers[:self.prompt_depth]):
            queries, next_x = self.block_without_prompts(index, layer, x)
            yield index, x, queries
            x = next_x

    def prompt_query_moments(self, images: Tensor) -> Tuple[Tensor, int]:
        """``(sum over tokens of z z^T (L, D, D) in float64, token count)``
        for a batch of images (B, 3, H, W), in eval mode."""
        sums = []
        with self.evaluating():
            for _, vectors in self.prompt_query_vectors(images):
                vectors = vectors.double()
                sums.append(vectors.mT @ vectors)
        return torch.stack(sums), vectors.shape[0]

    def prompt_query_statistics(self, images: Tensor) -> Tensor:
        """S_l = mean over the query tokens of z z^T, (L, D, D) float64."""
        sums, count = self.prompt_query_moments(images)
        return sums / count

    def calibrate_prompts(self,
                          batches: Iterable[Tensor]) -> Tuple[Tensor, int]:
        """Measure S over image batches and hand it to the prompt provider.

        S is the token-count weighted mean of every batch's statistics; in a
        distributed run the sums and counts of all ranks are added first
        (every rank must call this), so that every rank ends with the same
        matrices. Returns S (L, D, D), float64, and the number of query
        tokens it averages (all ranks).
        """
        provider = self.calibrated_provider()
        total, count = 0., 0
        for images in batches:
            sums, num_tokens = self.prompt_query_moments(images)
            total, count = total + sums, count + num_tokens
        if isinstance(total, float):
            raise ValueError('calibrate_prompts got no image batches')
        count = torch.tensor(float(count), dtype=torch.float64)
        all_reduce(total)  # in place; nothing without a process group
        all_reduce(count)
        statistics = total / count
        provider.set_statistics(statistics)
        return statistics, int(count)

    def calibrated_provider(self) -> nn.Module:
        """The prompt provider, which must be one calibrated from the
        statistics (has ``set_statistics``)."""
        if not hasattr(self.prompts, 'set_statistics'):
            raise TypeError(
                'calibration needs a whitening prompt provider, '
                "prompt_cfg=dict(type='WhitenedPrompts' or 'BilinearPrompts'"
                f', ...); this backbone has {type(self.prompts).__name__}')
        return self.prompts

    def embed(self, inputs: Tensor):
        """Patch embedding + class token + (interpolated) position embedding."""
        x, hw_shape = self.patch_embed(inputs)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = self._pos_embeding(x, hw_shape, self.pos_embed)
        if not self.with_cls_token:
            x = x[:, 1:]
        if self.pre_norm:
            x = self.pre_ln(x)
        return x, hw_shape

    def feature_map(self, x: Tensor, hw_shape) -> Union[Tensor, list]:
        """Patch tokens as a (B, D, h, w) map; class token and prompts dropped."""
        height, width = hw_shape
        patches = x[:, x.shape[1] - height * width:]
        out = patches.transpose(1, 2).reshape(x.shape[0], -1, height, width)
        if self.output_cls_token:
            return [out, x[:, 0]]
        return out

    # ---- guidance (DA-VPT) ------------------------------------------------
    def guided(self, index: int) -> bool:
        """Whether this forward records layer ``index`` for the guidance."""
        return index in self.guidance_records

    def class_query_input(self, index: int, layer: TransformerEncoderLayer,
                          x: Tensor) -> Optional[Tensor]:
        """The class token's input to the queries that meet layer
        ``index``'s prompts, from the layer input x: LN1(x_cls) (VPT: the
        self-attention queries it). None where the method records it during
        the layer instead (``record_class_query``)."""
        return layer.norm1(x[:, 0])

    def _record_layer_input(self, index: int, layer: TransformerEncoderLayer,
                            x: Tensor, hw_shape) -> None:
        """X, the mean patch token of the layer input, and the class token's
        query input where the layer input determines it."""
        num_patches = hw_shape[0] * hw_shape[1]
        self.guidance_records[index].update(
            patch_mean=x[:, -num_patches:].mean(1),
            class_query=self.class_query_input(index, layer, x))

    def record_class_query(self, index: int, queries: Tensor) -> None:
        self.guidance_records[index]['class_query'] = queries

    def _start_records(self) -> None:
        self.guidance_records = {}
        if self.guidance is not None and self.training:
            self.guidance_records = {i: {} for i in self.guidance.layers}

    def guidance_losses(self, labels: Tensor) -> Dict[str, Tensor]:
        """DA-VPT's losses for the images of the last training forward;
        ``labels``: (B,) class indices or (B, C) multi-hot booleans."""
        if not self.guidance_records:
            raise RuntimeError('guidance_losses needs a forward in train mode '
                               'first (it reads that forward\'s tokens)')
        return self.guidance.losses(self, labels)

    def forward(self, inputs: Tensor):
        x, hw_shape = self.embed(inputs)
        prompts = self.layer_prompts()
        self._start_records()
        outs = [self.feature_map(x, hw_shape)] if self.out_origin else []
        for index, layer in enumerate(self.layers):
            if self.guided(index):
                self._record_layer_input(index, layer, x, hw_shape)
            if layer.with_cp and self.training and torch.is_grad_enabled():
                x = checkpoint(self.forward_layer, index, layer, x, prompts,
                               use_reentrant=False)
            else:
                x = self.forward_layer(index, layer, x, prompts)
            if index == len(self.layers) - 1 and self.final_norm:
                x = self.norm1(x)
            if index in self.out_indices:
                outs.append(self.feature_map(x, hw_shape))
        return tuple(outs)
