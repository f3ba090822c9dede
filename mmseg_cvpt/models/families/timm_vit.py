"""timm's ``VisionTransformer`` and ``Eva`` as a frozen-ViT family (see
``.base``): DINOv2 (with and without registers), CLIP, SigLIP, DeiT /
AugReg, EVA-02, ... through timm's own modules.

``vit=dict(type='TimmViT', model_name='vit_base_patch14_reg4_dinov2',
checkpoint=PATH, **kwargs)``: kwargs go to ``timm.create_model`` (never
``pretrained=True``: nothing is downloaded), ``checkpoint`` is any file
timm's ``checkpoint_filter_fn`` reads (timm / hub layout, the original
DINOv2 release, OpenAI CLIP; .pth, .bin or .safetensors), read in
``init_weights``. The model's keys are timm's under ``model.``.

timm's block: x += drop_path(ls1(attn(norm1(x)))); x += drop_path(ls2(mlp(
norm2(x)))), ls = LayerScale (identity where absent; EVA's ``gamma_1`` /
``gamma_2``); the prefix tokens (class token, registers; none for SigLIP)
come first. The attention's q / k norms, rotary embedding (EVA-02's RoPE, on
the patch tokens only) and output norm (EVA's sub-LN) are applied by
``..attention`` (see ``TimmAttentionView``), so that prompts are never
rotated.
"""
from typing import Dict, Optional, Sequence, Union

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader
from mmseg.registry import MODELS
from torch import Tensor, nn

from ..attention import AttentionView
from ..prompt_cache import grad_reaches
from .base import Block, FrozenViTFamily, Tokens
from .mmseg_vit import check_out_indices

#: checkpoint keys of classification heads, which the frozen ViT leaves out
HEAD_KEYS = ('head.', 'attn_pool.', 'fc_norm.')


def _module_or_none(module: Optional[nn.Module]) -> Optional[nn.Module]:
    return None if isinstance(module, (nn.Identity, type(None))) else module


class TimmAttentionView(AttentionView):
    """timm's ``Attention`` or ``EvaAttention`` read as the packed
    projections (``..attention.AttentionView``): ``in_proj_weight`` =
    [W_q; W_k; W_v] is its fused qkv weight or EVA's three q / k / v_proj
    weights (concatenated once, again only when they change),
    ``in_proj_bias`` with EVA's zero key bias, ``out_proj`` its proj; the
    extras ``q_norm``, ``k_norm``, ``out_norm`` (timm's ``norm``) and, for
    a ``rotary`` attention, the rotary embedding ``rope`` of the forward
    it is bound to. Gated attention is not supported
    (``check_supported``)."""

    def __init__(self, attn: nn.Module, rotary: bool = False):
        self.module = attn
        self.q_norm = _module_or_none(attn.q_norm)
        self.k_norm = _module_or_none(attn.k_norm)
        self.out_norm = _module_or_none(attn.norm)
        self.rotary = rotary
        self._separate = getattr(attn, 'qkv', None) is None  # EVA's q, k, v
        self._concatenated = {}  # name -> (key, concatenation)
        self._zero_bias = None  # EVA's key bias

    def rotate(self, t: Tensor) -> Tensor:
        """The rotary embedding of the last N_patches tokens of t
        (..., N, H, d) (timm's ``apply_rot_embed_cat``)."""
        from timm.layers import apply_rot_embed_cat
        if self.rope is None:
            raise RuntimeError(
                'this attention rotates the patch tokens by the rotary '
                'embedding of a forward: take it from block.at(tokens)')
        num = self.rope.shape[0]
        patches = apply_rot_embed_cat(t[..., -num:, :, :], self.rope[:, None],
                                      half=self.module.rotate_half)
        return torch.cat((t[..., :-num, :, :], patches.type_as(t)), dim=-3)

    def _concatenation(self, name: str, parts: Sequence[Tensor]) -> Tensor:
        """torch.cat(parts), made again only when a part changes (another
        tensor, or written in place: its version counter); made afresh
        where a gradient reaches the parts or under torch.compile."""
        if torch.compiler.is_compiling() or grad_reaches(parts):
            return torch.cat(parts)
        key = tuple((id(p), p.data_ptr(), p._version) for p in parts)
        cached = self._concatenated.get(name)
        if cached is None or cached[0] != key:
            cached = self._concatenated[name] = (key, torch.cat(parts))
        return cached[1]

    @property
    def in_proj_weight(self) -> Tensor:
        attn = self.module
        if not self._separate:
            return attn.qkv.weight
        return self._concatenation('weight', (
            attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight))

    @property
    def in_proj_bias(self) -> Optional[Tensor]:
        """[b_q; b_k; b_v]: the fused qkv's bias, or EVA's q / v biases with
        a zero key bias (DINOv3's _qkvb models have a key bias too)."""
        attn = self.module
        if self._separate:
            q_bias, k_bias, v_bias = (attn.q_proj.bias, attn.k_proj.bias,
                                      attn.v_proj.bias)
        elif hasattr(attn, 'q_bias'):  # EVA's fused qkv
            q_bias, k_bias, v_bias = (attn.q_bias, getattr(attn, 'k_bias',
                                                           None), attn.v_bias)
        else:
            return attn.qkv.bias
        if q_bias is None:
            return None
        if k_bias is None:
            zero = self._zero_bias
            if zero is None or (zero.shape, zero.dtype, zero.device) != (
                    q_bias.shape, q_bias.dtype, q_bias.device):
                self._zero_bias = torch.zeros_like(q_bias).detach()
            k_bias = self._zero_bias
        return self._concatenation('bias', (q_bias, k_bias, v_bias))

    @property
    def out_proj(self) -> nn.Module:
        return self.module.proj

    @property
    def num_heads(self) -> int:
        return self.module.num_heads

    @property
    def dropout(self) -> float:
        return self.module.attn_drop.p

    def projection_weight(self, target: str) -> Tensor:
        """W_t in timm's weights: EVA's q / k / v_proj where they are
        separate (the packed weight is then a concatenated copy), else the
        fused qkv's rows or proj."""
        if self._separate and target != 'o':
            return getattr(self.module, f'{target}_proj').weight
        return super().projection_weight(target)


def _layer_scale(block: nn.Module, branch: int) -> Optional[Tensor]:
    """gamma (D,) of a block's attention (1) or MLP (2) branch, or None:
    timm's ``ls1`` / ``ls2`` LayerScale, EVA's ``gamma_1`` / ``gamma_2``."""
    layer_scale = getattr(block, f'ls{branch}', None)
    if layer_scale is not None:
        return getattr(layer_scale, 'gamma', None)
    return getattr(block, f'gamma_{branch}')


def _scaled(out: Tensor, gamma: Optional[Tensor]) -> Tensor:
    return out if gamma is None else out * gamma


def mlp_linears(mlp: nn.Module) -> Dict[str, nn.Linear]:
    """The linears of timm's ``Mlp`` and ``GluMlp`` (fc1, fc2) and
    ``SwiGLU`` (fc1_g, fc1_x, fc2), in the order the MLP applies them;
    none for other MLPs (their linears cannot be hooked)."""
    from timm.layers import GluMlp, Mlp, SwiGLU
    if isinstance(mlp, SwiGLU):
        names = ('fc1_g', 'fc1_x', 'fc2')
    elif isinstance(mlp, (Mlp, GluMlp)) and isinstance(mlp.fc1, nn.Linear):
        names = ('fc1', 'fc2')
    else:
        return {}
    return {name: getattr(mlp, name) for name in names}


class TimmBlock(Block):
    """A timm ``Block`` or ``EvaBlock`` (pre-norm), ``rotary`` where its
    attention rotates the patch tokens (EVA-02's RoPE). Projection hooks
    reach its MLP where it is timm's ``Mlp``, ``GluMlp`` or ``SwiGLU``
    (``mlp_linears``)."""

    def __init__(self, block: nn.Module, with_cp: bool, rotary: bool = False):
        from timm.layers import GluMlp
        self.module = block
        self._with_cp = with_cp
        self.attention = TimmAttentionView(block.attn, rotary)
        self._linears = mlp_linears(block.mlp)
        self._halves = isinstance(block.mlp, GluMlp)  # fc1 h = [x1, x2]

    @property
    def with_cp(self) -> bool:
        return self._with_cp

    @property
    def output_scale(self) -> Optional[Tensor]:
        """The layer scale of the attention branch, gamma (D,), or None."""
        return _layer_scale(self.module, 1)

    def attention_output(self, out: Tensor) -> Tensor:
        return self.module.drop_path1(_scaled(out, self.output_scale))

    @property
    def mlp_linears(self) -> Dict[str, nn.Linear]:
        return self._linears

    def mlp(self, h: Tensor) -> Tensor:
        """timm's MLP forms, each linear through ``linear``:
        fc2(norm(drop(act(fc1 h)))), GluMlp's act on one half of fc1 h
        times the other, SwiGLU's act(fc1_g h) * fc1_x h."""
        mlp = self.module.mlp
        if not self.mlp_hooked:
            return mlp(h)
        if 'fc1_g' in self._linears:
            x = mlp.act(self.linear('fc1_g', h)) * self.linear('fc1_x', h)
        elif self._halves:
            x1, x2 = self.linear('fc1', h).chunk(2, dim=mlp.chunk_dim)
            x = x1 * mlp.act(x2) if mlp.gate_last else mlp.act(x1) * x2
        else:
            x = mlp.act(self.linear('fc1', h))
        return mlp.drop2(self.linear('fc2', mlp.norm(mlp.drop1(x))))

    def mlp_output(self, out: Tensor) -> Tensor:
        block = self.module
        return block.drop_path2(_scaled(out, _layer_scale(block, 2)))


def check_supported(model: nn.Module, model_name: str) -> None:
    """A timm ``VisionTransformer`` or ``Eva`` of pre-norm blocks with
    timm's attention, no patch dropout and one rotary embedding for all
    blocks: what ``TimmBlock`` and ``embed`` implement."""
    from timm.models.eva import Eva, EvaAttention, EvaBlock
    from timm.models.vision_transformer import (Attention, Block,
                                                VisionTransformer)
    if not isinstance(model, (VisionTransformer, Eva)):
        raise NotImplementedError(
            f'TimmViT: {model_name} is a timm {type(model).__name__}; the '
            'family supports timm VisionTransformer and Eva models')
    supported = (Block, EvaBlock), (Attention, EvaAttention)
    problems = sorted(
        {f'{type(block).__name__} blocks' for block in model.blocks
         if type(block) not in supported[0]}
        | {f'{type(block.attn).__name__} attention' for block in model.blocks
           if type(getattr(block, 'attn', None)) not in supported[1]})
    if any(getattr(block.attn, 'gate', None) is not None
           for block in model.blocks):
        problems.append('gated attention (gated_attn)')
    if getattr(model, 'rope_mixed', False):
        problems.append('a rotary embedding per block (rope_mixed)')
    if _module_or_none(model.patch_drop) is not None:
        problems.append('patch dropout (patch_drop_rate > 0)')
    if problems:
        raise NotImplementedError(
            f'TimmViT: {model_name} has {", ".join(problems)}; the family '
            'supports pre-norm Block / EvaBlock with timm\'s Attention / '
            'EvaAttention, one rotary embedding and no patch dropout')


#: timm.create_model's arguments that read weights (files, the Hub)
WEIGHT_SOURCES = ('pretrained', 'checkpoint_path', 'pretrained_cfg',
                  'pretrained_cfg_overlay', 'cache_dir')


def check_local_model(model_name, kwargs: dict) -> None:
    """Refuse a model that timm would build from outside its own registry
    (``hf-hub:ORG/NAME`` fetches its ``config.json`` from the Hugging Face
    Hub even without weights, ``local-dir:PATH`` reads a folder's) and the
    arguments that make timm read weights: checked before timm is called,
    so a config (or a task package's) never makes timm open a file or URL.
    """
    if not isinstance(model_name, str):
        raise ValueError(f'TimmViT: model_name must be a timm model name, '
                         f'not {model_name!r}')
    source, colon, _ = model_name.partition(':')
    if colon:
        raise ValueError(
            f'TimmViT: model_name={model_name!r} names a model outside '
            f"timm's registry ({source}:), which timm would fetch or read; "
            "give a timm model name (e.g. 'vit_base_patch14_reg4_dinov2') "
            'and its weights as checkpoint=PATH (see docs/pretrained.md)')
    import timm
    if not timm.is_model(model_name):
        raise ValueError(
            f'TimmViT: {model_name!r} is not a model in timm '
            f"{timm.__version__}'s registry; see timm.list_models()")
    sources = [key for key in WEIGHT_SOURCES if kwargs.get(key)]
    if sources:
        raise ValueError(
            f'TimmViT never loads weights through timm ({sources[0]}='
            f'{kwargs[sources[0]]!r}): give the file as checkpoint=PATH '
            '(see docs/pretrained.md)')


@MODELS.register_module()
class TimmViT(FrozenViTFamily):
    """A timm ViT behind the family interface.

    Args:
        model_name (str): a timm model of the ``VisionTransformer`` or
            ``Eva`` class.
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
        check_local_model(model_name, kwargs)
        kwargs.pop('pretrained', None)  # False or absent: timm gets False
        kwargs.setdefault('num_classes', 0)
        kwargs.setdefault('global_pool', '')
        self.model = timm.create_model(model_name, pretrained=False, **kwargs)
        check_supported(self.model, model_name)
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
        rotary = getattr(self.model, 'rope', None) is not None
        self.blocks = [TimmBlock(block, with_cp, rotary)
                       for block in self.model.blocks]
        self.pretrained_keys = frozenset(self.state_dict())
        self.check_family()

    @property
    def embed_dims(self) -> int:
        return self.model.embed_dim

    @property
    def patch_size(self) -> int:
        return self.model.patch_embed.patch_size[0]

    @property
    def num_prefix_tokens(self) -> int:
        return self.model.num_prefix_tokens

    @property
    def is_eva(self) -> bool:
        return hasattr(self.model, 'rope')

    def embed(self, images: Tensor) -> Tokens:
        """timm's patch embedding, prefix tokens and position embedding (and
        EVA's rotary embedding of the patches)."""
        model = self.model
        x = model.patch_embed(images)
        if self.is_eva:
            x, rope = model._pos_embed(x)
        else:
            x, rope = model._pos_embed(x), None
        hw_shape = tuple(model.patch_embed.dynamic_feat_size(
            images.shape[-2:]))
        return Tokens(model.norm_pre(x), self.num_prefix_tokens, 0, hw_shape,
                      rope)

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
        to the model's), classification heads left out.

        EVA-02's MIM release keeps its final norm as ``norm``, which timm's
        filter moves to ``fc_norm`` (the norm of average pooling); the
        backbone, built without pooling, has it as ``norm`` again."""
        if self.is_eva:
            from timm.models.eva import checkpoint_filter_fn
        else:
            from timm.models.vision_transformer import checkpoint_filter_fn
        state = checkpoint
        for wrapper in ('state_dict', 'model', 'module'):  # ours, EVA's, ...
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
        if prefix:
            state = {k[len(prefix):]: v for k, v in state.items()
                     if k.startswith(prefix)}
        if any(k.startswith('model.') for k in state):  # ours: model.blocks
            state = {k[len('model.'):]: v for k, v in state.items()
                     if k.startswith('model.')}
        state = checkpoint_filter_fn(
            {k: v for k, v in state.items() if isinstance(v, Tensor)},
            self.model)
        own = self.model.state_dict()
        if 'norm.weight' in own and 'norm.weight' not in state:
            state = {('norm.' + k[len('fc_norm.'):]
                      if k.startswith('fc_norm.') else k): v
                     for k, v in state.items()}
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
