"""The method-agnostic core of every method: a frozen ViT (a family, see
``..families``), what a method tunes, and add-ons.

``FrozenViTBackbone.forward``::

    tokens = vit.embed(images)                 # [prefix, patches]
    P = dropout(prompts())                     # the provider's (L, m, D)
    for i, block in enumerate(self.blocks):    # the family's, with hooks
        add-ons see the layer input (layer_input)
        tokens = forward_block(i, block.at(tokens), tokens, P)  # the method
        outputs at out_indices (final norm after the last block)

A method is a subclass. One that changes the blocks' projections or adds a
branch beside their MLP gives them hooks once, at build time
(``hook_blocks``: LoRA, AdaptFormer) and keeps the plain ``forward_block``.
One with prompts implements ``forward_block`` (how block i uses its tuned
parameters; the returned ``Tokens`` say what the block leaves in the
sequence), ``block_without_prompts`` (the same block in the prompt-free
model, with the tokens that would query its prompts) and names in
``prompt_attention`` the attention whose keys the prompts become; it calls
``observe_prompt_queries`` with the tokens that query its prompts. Its own
modules train.

The core keeps the frozen ViT frozen (and, with ``frozen_eval``, in eval
mode while training), its state-dict keys those of the ViT itself (the
family's keys, not ``vit.``-prefixed: checkpoints of the plain ViT load
unchanged), and composes:

* the prompt provider (``prompt_cfg``, see ``..prompts``);
* ``FrozenBase``: the record of the frozen weights' base checkpoint in the
  ``_extra_state`` key, and their restoration for tuned-only state dicts;
* ``PromptCache``: the prompts' side of each layer, once per forward;
* add-ons (``addons``): modules told the forward's prompts
  (``forward_start``), each layer's input (``layer_input``) and the tokens
  that query each layer's prompts (``prompt_queries``); each is a child
  module under its name, and may add losses of its own.
"""
from contextlib import contextmanager
from numbers import Integral
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..attention import AttentionView, ProjectionHook
from ..families import Block, FrozenViTFamily, Tokens
from ..families.base import MLPHook
from ..prompt_cache import PromptCache, tensors_of
from ..prompts import PromptProvider
from .frozen_base import EXTRA_STATE_KEY, FrozenBase

VIT_PREFIX = 'vit.'
#: the add-on methods the core calls, when an add-on has them
OBSERVER_EVENTS = ('forward_start', 'layer_input', 'prompt_queries')


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


def resolve_also_train(also_train: Sequence[str],
                       frozen_exclude: Optional[Sequence[str]]) -> tuple:
    """``also_train``, or its older name ``frozen_exclude``; not both."""
    if frozen_exclude is None:
        return tuple(also_train)
    if also_train:
        raise ValueError('give also_train or its older name frozen_exclude, '
                         f'not both (got {also_train!r} and '
                         f'{frozen_exclude!r})')
    return tuple(frozen_exclude)


#: the family arguments that shape the outputs, which the backbone also
#: takes (for every family)
OUTPUT_ARGUMENTS = ('out_indices', 'final_norm', 'output_cls_token',
                    'out_origin')


def build_vit(vit: Optional[dict], vit_kwargs: dict) -> FrozenViTFamily:
    """The frozen ViT: ``vit`` (a family config) or, by default, mmseg's
    ViT with the backbone's other arguments. ``OUTPUT_ARGUMENTS`` given to
    the backbone go to the family, whichever it is."""
    if vit is None:
        built = MODELS.build(dict(vit_kwargs, type='MMSegViT'))
    else:
        outputs = {k: vit_kwargs.pop(k) for k in OUTPUT_ARGUMENTS
                   if k in vit_kwargs}
        twice = sorted(set(outputs) & set(vit))
        if twice:
            raise ValueError(
                f'{twice[0]} is given twice, as model.backbone.{twice[0]} '
                f'and as model.backbone.vit.{twice[0]}: give it in one '
                'place')
        if vit_kwargs:
            raise ValueError(
                f'the ViT is given by vit={vit!r}: its arguments go there, '
                f'not to the backbone (got {sorted(vit_kwargs)})')
        built = MODELS.build(dict(vit, **outputs))
    if not isinstance(built, FrozenViTFamily):
        raise TypeError(
            f'vit={vit!r} built a {type(built).__name__}, not a '
            'FrozenViTFamily: see mmseg_cvpt.models.FrozenViTFamily')
    return built


def find_prompted_backbone(model: nn.Module) -> 'FrozenViTBackbone':
    """The frozen-ViT backbone inside a (wrapped) segmentor or
    classifier."""
    for module in model.modules():
        if isinstance(module, FrozenViTBackbone):
            return module
    raise TypeError(
        f'{type(model).__name__} has no prompted backbone (VPTViT, CVPTViT)')


def find_addon(model: nn.Module, kind: type) -> Optional[nn.Module]:
    """The add-on of type ``kind`` of the model's prompted backbone."""
    backbone = find_prompted_backbone(model)
    return next((a for a in backbone.addons.values() if isinstance(a, kind)),
                None)


class FrozenViTBackbone(BaseModule):
    """Frozen ViT whose blocks a method tunes (``PromptedVisionTransformer``
    is its older name).

    Args:
        num_prompts (int): prompts per layer, m. 0 gives the plain (frozen)
            ViT.
        prompt_depth (str | int): 'deep' (every layer has its prompts),
            'shallow' (only layer 0) or the number k of leading layers.
        prompt_cfg (dict): the prompt provider; ``num_layers``,
            ``num_prompts`` and ``embed_dims`` are filled in.
        prompt_dropout (float): dropout on the prompts.
        also_train (Sequence[str]): frozen ViT parameters whose names
            contain one of these strings train too, e.g. ``['bias']`` (bias
            tuning) or ``['in_proj_bias']``; 'all' trains everything. What
            a method adds always trains. ``frozen_exclude`` is its older
            name.
        frozen_eval (bool): keep the ViT's modules in eval mode while
            training (no dropout or drop-path on them), whatever of them
            trains. Default True.
        addons (dict, optional): name -> config of an add-on module (see
            the module docstring); ``num_layers``,
            ``num_prompted``, ``num_prompts``, ``embed_dims`` and
            ``num_prefix_tokens`` are filled in.
        base_checkpoint (str, optional): where the frozen weights of a
            tuned-only checkpoint are, when not at the path it records.
        vit (dict, optional): the frozen ViT's family config; by default
            mmseg's ViT (``MMSegViT``) with the other keyword arguments.
            ``out_indices``, ``final_norm``, ``output_cls_token`` and
            ``out_origin`` may be given to the backbone for any family
            (not in both places).
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=..., prefix=...)`` loads the ViT strictly.
        **vit_kwargs: the arguments of mmseg's ``VisionTransformer``.
    """

    default_prompt_cfg = dict(type='LayerPrompts', init='xavier')
    #: whether the method's blocks read prompts; a method that does not
    #: (LoRA, adapters) refuses num_prompts > 0
    uses_prompts = True

    def __init__(self,
                 num_prompts: int = 0,
                 prompt_depth: Union[str, int] = 'deep',
                 prompt_cfg: Optional[dict] = None,
                 prompt_dropout: float = 0.1,
                 also_train: Sequence[str] = (),
                 frozen_eval: bool = True,
                 addons: Optional[Dict[str, dict]] = None,
                 base_checkpoint: Optional[str] = None,
                 vit: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 frozen_exclude: Optional[Sequence[str]] = None,
                 **vit_kwargs):
        num_prompts = parse_num_prompts(num_prompts)
        if num_prompts and not self.uses_prompts:
            raise ValueError(
                f'{type(self).__name__} has no prompts (num_prompts='
                f'{num_prompts}): its tuned modules are its own arguments')
        if not 0. <= prompt_dropout < 1.:
            raise ValueError(
                f'prompt_dropout must be in [0, 1), got {prompt_dropout!r}')
        super().__init__(init_cfg=init_cfg)
        self.vit = build_vit(vit, vit_kwargs)
        #: the blocks the forward runs: the family's, with a method's hooks
        self.blocks: List[Block] = list(self.vit.blocks)
        self.num_prompts = num_prompts
        self.prompt_depth = parse_prompt_depth(prompt_depth,
                                               len(self.vit.blocks))
        self.prompts = self._build_prompts(prompt_cfg)
        self.prompt_dropout = nn.Dropout(prompt_dropout)
        self.trainable_patterns = resolve_also_train(also_train,
                                                     frozen_exclude)
        self.frozen_eval = frozen_eval
        self.frozen = FrozenBase(
            self.vit, self.is_frozen, type(self).__name__, base_checkpoint,
            self.pretrained_source)
        self.prompt_cache = PromptCache()
        self.addons = self._build_addons(addons or {})
        self._register_state_dict_hook(self._unprefix_vit_keys)
        for name, param in self.vit.named_parameters():
            param.requires_grad = not self.is_frozen(name)

    def _build_prompts(self,
                       prompt_cfg: Optional[dict]) -> Optional[nn.Module]:
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
            cfg.setdefault('patch_size', self.vit.patch_size)
        return MODELS.build(
            dict(
                cfg,
                num_layers=self.prompt_depth,
                num_prompts=self.num_prompts,
                embed_dims=self.vit.embed_dims))

    def _build_addons(self, addons: Dict[str, dict]) -> Dict[str, nn.Module]:
        built = {}
        for name, cfg in addons.items():
            if hasattr(self, name):
                raise ValueError(f'add-on name {name!r} is taken by the '
                                 'backbone; choose another')
            built[name] = MODELS.build(
                dict(cfg, num_layers=len(self.vit.blocks),
                     num_prompted=self.prompt_depth,
                     num_prompts=self.num_prompts,
                     embed_dims=self.vit.embed_dims,
                     num_prefix_tokens=self.vit.num_prefix_tokens))
            self.add_module(name, built[name])
        return built

    def hook_blocks(self, projection: Sequence[ProjectionHook] = (),
                    mlp: Sequence[MLPHook] = ()) -> None:
        """Give block i the projection hook ``projection[i]`` and the MLP
        hook ``mlp[i]`` (either may be empty): once, at build time."""
        num_blocks = len(self.vit.blocks)
        for hooks in (projection, mlp):
            if hooks and len(hooks) != num_blocks:
                raise ValueError(f'{len(hooks)} hooks for {num_blocks} '
                                 'blocks')
        self.blocks = [
            block.with_hooks(projection[i] if projection else None,
                             mlp[i] if mlp else None)
            for i, block in enumerate(self.vit.blocks)]

    # ---- identity -------------------------------------------------------
    def structure(self) -> dict:
        """The arguments that decide how the tensors are used, beyond their
        shapes: part of the model's identity that checkpoints record
        (``engine.loading.model_identity``). A method adds its own; ways to
        compute the same outputs (VPT's ``prompt_form``) and initialisations
        are not structure."""
        return dict(
            vit=type(self.vit).__name__,
            num_prompts=self.num_prompts,
            prompt_depth=self.prompt_depth,
            prompts=type(self.prompts).__name__ if self.prompts else None,
            addons={name: type(addon).__name__
                    for name, addon in self.addons.items()})

    # ---- freezing -------------------------------------------------------
    def is_frozen(self, key: str) -> bool:
        """ViT tensors are frozen unless ``also_train`` names them."""
        return not ('all' in self.trainable_patterns
                    or any(p in key for p in self.trainable_patterns))

    def is_pretrained_key(self, key: str) -> bool:
        """Whether a state-dict key belongs to the ViT (else: a module we
        added)."""
        return key in self.vit.pretrained_keys

    def train(self, mode: bool = True):
        """Train mode for what a method adds; with ``frozen_eval`` the ViT
        stays in eval mode, also where ``also_train`` makes it learn."""
        self.prompt_cache.clear()
        super().train(mode)
        if mode and self.frozen_eval:
            self.vit.eval()
        return self

    def trainable_summary(self) -> str:
        trainable = sum(p.numel() for p in self.parameters()
                        if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        summary = (f'{type(self).__name__}: {trainable:,} trainable of '
                   f'{total:,} parameters')
        if not self.uses_prompts:
            return summary
        provider = f', {type(self.prompts).__name__}' if self.prompts else ''
        return (f'{summary} ({self.num_prompts} prompts x '
                f'{self.prompt_depth} layers{provider})')

    # ---- the frozen weights and their base ------------------------------
    def pretrained_source(self) -> Optional[dict]:
        """Where the ViT's weights come from: the backbone's Pretrained
        ``init_cfg``, else the family's ``checkpoint``, else None."""
        cfg = self.init_cfg if isinstance(self.init_cfg, dict) else {}
        if cfg.get('type') == 'Pretrained':
            return cfg
        if self.vit.checkpoint:
            return dict(type='Pretrained', checkpoint=self.vit.checkpoint)
        return None

    def init_weights(self):
        source = self.pretrained_source()
        if source:
            self.load_pretrained(source['checkpoint'], source.get('prefix'))
        else:
            self.vit.init_weights()
            self.vit_weights_loaded()
        print_log(self.trainable_summary(), logger='current')

    def load_pretrained(self, checkpoint: str, prefix: Optional[str] = None):
        """Load a ViT checkpoint strictly (see the family's
        ``load_pretrained``) and record it as the base."""
        self.vit.load_pretrained(checkpoint, prefix)
        self.frozen.loaded_from(checkpoint, prefix)
        self.vit_weights_loaded()

    def vit_weights_loaded(self) -> None:
        """Hook for a method's modules initialised from the ViT's weights."""

    @property
    def frozen_base(self) -> Optional[dict]:
        """The base checkpoint on record (``FrozenBase.record``)."""
        return self.frozen.record

    @frozen_base.setter
    def frozen_base(self, record: Optional[dict]) -> None:
        self.frozen.record = record

    @property
    def base_checkpoint(self) -> Optional[str]:
        """The base checkpoint override (``FrozenBase.override``)."""
        return self.frozen.override

    @base_checkpoint.setter
    def base_checkpoint(self, path: Optional[str]) -> None:
        self.frozen.override = path

    def frozen_keys(self) -> List[str]:
        return self.frozen.frozen_keys()

    def frozen_state_dict(self) -> Dict[str, Tensor]:
        return self.frozen.state_dict()

    def frozen_fingerprint(self, keys: Optional[List[str]] = None) -> str:
        return self.frozen.fingerprint(keys)

    def adopt_base(self, path: str,
                   prefix: Optional[str] = None) -> Optional[str]:
        return self.frozen.adopt(path, prefix)

    def share_frozen_from(self, other: 'FrozenViTBackbone',
                          keys: Optional[List[str]] = None) -> None:
        """Use ``other``'s frozen tensors (or those of ``keys``): the same
        objects."""
        self.frozen.share_from(other.frozen, keys)

    def get_extra_state(self) -> Tensor:
        return self.frozen.extra_state()

    def set_extra_state(self, state: Tensor) -> None:
        self.frozen.set_extra_state(state)

    # ---- state dicts: the ViT's keys without the ``vit.`` prefix ----------
    @staticmethod
    def _unprefix_vit_keys(module, state_dict, prefix, local_metadata):
        """State-dict hook (torch's and mmengine's ``get_state_dict``):
        ``prefix + 'vit.' + key`` -> ``prefix + key``, in place, in order."""
        vit_prefix = prefix + VIT_PREFIX
        items = [(prefix + key[len(vit_prefix):]
                  if key.startswith(vit_prefix) else key, value)
                 for key, value in state_dict.items()]
        state_dict.clear()
        state_dict.update(items)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Fill in the frozen weights a tuned-only state dict leaves out,
        then move the ViT's keys under ``vit.``."""
        self.prompt_cache.clear()
        record_key = prefix + EXTRA_STATE_KEY
        self.frozen.restore_absent(state_dict, prefix, record_key)
        for key in sorted(self.vit.pretrained_keys):
            if prefix + key in state_dict:
                state_dict[prefix + VIT_PREFIX + key] = state_dict.pop(
                    prefix + key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if record_key not in state_dict and record_key in missing_keys:
            missing_keys.remove(record_key)  # older checkpoints: no record

    # ---- forward ----------------------------------------------------------
    def layer_prompts(self, prompts: Optional[Tensor]) -> List[Tensor]:
        """The (dropped-out) prompts of each prompted layer, (m, D) each."""
        if prompts is None:
            return []
        return list(self.prompt_dropout(prompts).unbind(0))

    def prompts_vary(self) -> bool:
        """Whether the prompts may differ between calls (train mode)."""
        return any(module.training
                   for module in (self, self.prompts, self.prompt_dropout))

    def cached_prompt_side(self, index: int, modules: Sequence[nn.Module],
                           compute, tag=(), tensors: Sequence[Tensor] = ()):
        """``compute()``, the prompts' side of layer ``index`` made with
        ``modules`` (and ``tensors``), through the prompt cache."""
        sources = tensors_of(self.prompts, *modules) + list(tensors)
        return self.prompt_cache.get(index, sources, compute,
                                     self.prompts_vary(), tag)

    def forward_block(self, index: int, block: Block, tokens: Tokens,
                      prompts: List[Tensor]) -> Tokens:
        """Block ``index`` applied to the tokens with the layers' prompts:
        the block (with its hooks) as it is, for methods without
        prompts."""
        return tokens.replace_x(block(tokens.x))

    def block_without_prompts(self, index: int, block: Block,
                              tokens: Tokens) -> Tuple[Tensor, Tokens]:
        """Block ``index`` of the prompt-free model: ``(u, block(x))`` with
        u the tokens that query the block's prompts in the prompted
        model."""
        raise NotImplementedError

    def prompt_attention(self, index: int, tokens: Tokens) -> AttentionView:
        """The attention whose keys and values layer ``index``'s prompts
        become, in a forward over ``tokens``: the block's own
        self-attention."""
        return self.blocks[index].at(tokens).attention

    def _notify(self, event: str, *args) -> None:
        for addon in self.addons.values():
            handler = getattr(addon, event, None)
            if handler is not None:
                handler(*args)

    def observe_prompt_queries(self, index: int, queries: Tensor,
                               attention: AttentionView) -> None:
        """Tell the add-ons the tokens (B, N, D) that query layer
        ``index``'s prompts through ``attention``."""
        self._notify('prompt_queries', index, queries, attention)

    def _run_block(self, index: int, block: Block, tokens: Tokens,
                   prompts: List[Tensor]) -> Tokens:
        if block.with_cp and self.training and torch.is_grad_enabled():
            return checkpoint(self.forward_block, index, block, tokens,
                              prompts, use_reentrant=False)
        return self.forward_block(index, block, tokens, prompts)

    def forward(self, inputs: Tensor):
        vit = self.vit
        tokens = vit.embed(inputs)
        prompts = self.prompts() if self.prompts is not None else None
        self._notify('forward_start', prompts)
        layer_prompts = self.layer_prompts(prompts)
        outs = [vit.feature_map(tokens)] if vit.out_origin else []
        last = len(self.blocks) - 1
        for index, block in enumerate(self.blocks):
            self._notify('layer_input', index, tokens)
            tokens = self._run_block(index, block.at(tokens), tokens,
                                     layer_prompts)
            if index == last:
                tokens = tokens.replace_x(vit.final_normed(tokens.x))
            if index in vit.out_indices:
                outs.append(vit.feature_map(tokens))
        return tuple(outs)

    # ---- the prompt-free model --------------------------------------------
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

    def prompt_free_layers(
            self, images: Tensor) -> Iterator[Tuple[int, Tokens, Tensor]]:
        """``(l, tokens_l, u_l)`` for each prompted layer l of the
        prompt-free model: its input and the tokens that query its
        prompts."""
        tokens = self.vit.embed(images)
        for index, block in enumerate(self.blocks[:self.prompt_depth]):
            queries, next_tokens = self.block_without_prompts(
                index, block.at(tokens), tokens)
            yield index, tokens, queries
            tokens = next_tokens


#: the older name of :class:`FrozenViTBackbone`, for configs and code
#: written against it
PromptedVisionTransformer = FrozenViTBackbone
