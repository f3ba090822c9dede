"""The extension points declared in code: a family is a subclass of
``FrozenViTFamily``, methods change blocks through hooks (LoRA on any named
projection, the MLP's included), the output arguments sit at the backbone
level for every family."""
import os.path as osp
import re

import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from mmseg_cvpt.models import (FrozenViTBackbone, FrozenViTFamily,
                               PromptedVisionTransformer)
from tiny_runs import REPO


# ---- a third family: docs/architecture.md's, run from the page -----------
def toy_family():
    """The page's last python block: ToyViT and its blocks."""
    text = open(osp.join(REPO, 'docs', 'architecture.md')).read()
    namespace = {}
    exec(compile(re.findall(r'```python\n(.*?)```', text, re.S)[-1],
                 'docs/architecture.md', 'exec'), namespace)
    return namespace


TOY = toy_family()
DIMS, HEADS, LAYERS, PATCH, SIZE = (TOY[name] for name in (
    'DIMS', 'HEADS', 'LAYERS', 'PATCH', 'SIZE'))
ToyViT = TOY['ToyViT']


def toy_backbone(type_, **kwargs):
    torch.manual_seed(0)
    model = MODELS.build(dict(type=type_, _scope_='mmseg',
                              vit=dict(type='ToyViT'), **kwargs))
    model.init_weights()
    with torch.no_grad():  # no special values: biases and B non-zero
        for name, tensor in model.named_parameters():
            if name.endswith('bias') or '.up.' in name:
                tensor.copy_(0.1 * torch.randn_like(tensor))
    return model.eval()


def mha(attn, x, keys):
    """nn.MultiheadAttention's own forward: queries x, keys = values."""
    return attn(x, keys, keys, need_weights=False)[0]


def toy_forward(model, images, method):
    """The toy ViT's last block output written from its modules, with the
    method's equation (``model``: its tuned tensors)."""
    vit = model.vit
    x = vit.embed(images).x
    batch = len(x)
    for index, layer in enumerate(vit.layers):
        h = layer.norm1(x)
        if method == 'vpt':  # [cls, P_i, patches] through the block
            prompts = model.prompts()[index].expand(batch, -1, -1)
            seq = torch.cat((x[:, :1], prompts, x[:, 1:]), dim=1)
            seq = seq + mha(layer.attn, layer.norm1(seq), layer.norm1(seq))
            seq = seq + layer.fc2(F.gelu(layer.fc1(layer.norm2(seq))))
            m = prompts.shape[1]
            x = torch.cat((seq[:, :1], seq[:, 1 + m:]), dim=1)
            continue
        if method == 'lora':  # W_t + (alpha / r) B_t A_t on q and v
            updates = model.updates[index]
            w = layer.attn.in_proj_weight.clone()
            w[:DIMS] += updates.delta('q')
            w[2 * DIMS:] += updates.delta('v')
            out = F.multi_head_attention_forward(
                h.transpose(0, 1), h.transpose(0, 1), h.transpose(0, 1),
                DIMS, HEADS, w, layer.attn.in_proj_bias, None, None, False,
                0., layer.attn.out_proj.weight, layer.attn.out_proj.bias,
                training=False, need_weights=False)[0].transpose(0, 1)
            x = x + out
        else:
            x = x + mha(layer.attn, h, h)
        if method == 'cvpt':  # x + CA(x, P_i), the block's own weights
            x = x + mha(layer.attn, x, model.prompts()[index][None].expand(
                batch, -1, -1))
        out = x + layer.fc2(F.gelu(layer.fc1(layer.norm2(x))))
        if method == 'adaptformer':
            out = out + model.adapters[index](x)
        x = out
    return x[:, 1:].transpose(1, 2).reshape(batch, DIMS, SIZE // PATCH,
                                            SIZE // PATCH)


@pytest.mark.parametrize('method, type_, kwargs', [
    ('frozen', 'VPTViT', {}),
    ('vpt', 'VPTViT', dict(num_prompts=3, prompt_dropout=0.)),
    ('cvpt', 'CVPTViT', dict(num_prompts=3, prompt_dropout=0.)),
    ('lora', 'LoRAViT', dict(rank=2)),
    ('adaptformer', 'AdaptFormerViT', dict(bottleneck=4)),
])
def test_a_third_family_runs_every_kind_of_method(method, type_, kwargs):
    """A family written by subclassing FrozenViTFamily (this module's
    ToyViT) runs VPT, CVPT, LoRA and AdaptFormer: each equals its equation
    written from the toy's modules; only the method's tensors train."""
    model = toy_backbone(type_, **kwargs)
    images = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        got, = model(images)
        expected = toy_forward(model, images, method)
    assert (got - expected).abs().max() < 1e-5
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith('vit.') for n in trainable)
    assert bool(trainable) == (method != 'frozen')


def test_a_family_must_set_its_members():
    class Incomplete(ToyViT):

        def __init__(self):
            FrozenViTFamily.__init__(self)
            self.blocks = []
            self.check_family()

    with pytest.raises(TypeError, match=r"Incomplete is a FrozenViTFamily "
                       r"without \['out_indices'"):
        Incomplete()
    with pytest.raises(TypeError, match="built a VisionTransformer, not a "
                       'FrozenViTFamily'):  # mmseg's own, not our family
        MODELS.build(dict(type='VPTViT', _scope_='mmseg', vit=dict(
            type='VisionTransformer', img_size=32, patch_size=8,
            embed_dims=32, num_layers=1, num_heads=4)))


def test_the_core_has_its_name_and_keeps_the_old_one():
    assert PromptedVisionTransformer is FrozenViTBackbone
    model = toy_backbone('LoRAViT')
    assert isinstance(model, PromptedVisionTransformer)


# ---- LoRA on the MLP's projections -----------------------------------------
MMSEG = dict(img_size=32, patch_size=8, embed_dims=DIMS, num_layers=LAYERS,
             num_heads=HEADS, mlp_ratio=2, out_indices=(1, ))
TIMM = dict(vit=dict(type='TimmViT', model_name='vit_base_patch14_dinov2',
                     img_size=28, embed_dim=DIMS, depth=LAYERS,
                     num_heads=HEADS, out_indices=(1, ),
                     dynamic_img_size=True))
EVA = dict(vit=dict(type='TimmViT', model_name='eva02_base_patch14_224',
                    img_size=28, embed_dim=DIMS, depth=LAYERS,
                    num_heads=HEADS, out_indices=(1, ),
                    dynamic_img_size=True))
FAMILIES = {'mmseg': (MMSEG, 32, ('fc1', 'fc2')),
            'timm': (TIMM, 28, ('fc1', 'fc2')),
            'eva': (EVA, 28, ('fc1_g', 'fc1_x', 'fc2'))}


def lora_on(family, targets):
    arch, size, _ = FAMILIES[family]
    torch.manual_seed(0)
    model = MODELS.build(dict(type='LoRAViT', _scope_='mmseg', rank=2,
                              alpha=4., targets=targets, **arch))
    model.init_weights()
    with torch.no_grad():
        for updates in model.updates:
            for up in updates.up.values():
                up.normal_(0, 0.1)
    return model.eval(), torch.randn(2, 3, size, size)


def explicit_mlp(block, updates, h):
    """The block's MLP from its modules, each target t's output
    W_t x + b_t + (alpha / r) B_t A_t x."""
    def linear(name, x):
        out = block.mlp_linears[name](x)
        if name in updates.targets:
            out = out + updates.scale * x @ (updates.up[name] @
                                             updates.down[name]).T
        return out

    mlp = getattr(block.module, 'mlp', None)
    if mlp is None:  # mmseg's FFN: fc1, activation, fc2
        return linear('fc2', block.module.ffn.layers[0][1](linear('fc1', h)))
    if 'fc1_g' in block.mlp_linears:  # EVA's SwiGLU
        inner = mlp.act(linear('fc1_g', h)) * linear('fc1_x', h)
    else:
        inner = mlp.act(linear('fc1', h))
    return linear('fc2', mlp.norm(inner))


@pytest.mark.parametrize('family', FAMILIES)
def test_lora_on_the_mlp_is_its_equation_and_merges_exactly(family):
    """LoRA on fc1 / fc2 (EVA's SwiGLU: fc1_g, fc1_x, fc2) and q, v: each
    hooked MLP equals W x + (alpha / r) B A x on those projections; the
    merged ViT (B A in the weights) gives the unmerged outputs."""
    targets = FAMILIES[family][2] + ('q', 'v')
    model, images = lora_on(family, targets)
    h = torch.randn(2, 5, DIMS)
    with torch.no_grad():
        for block, updates in zip(model.blocks, model.updates):
            assert set(updates.targets) == set(targets)
            expected = explicit_mlp(block, updates, h)
            assert (block.mlp(h) - expected).abs().max() < 1e-5
            plain = [b for b in model.vit.blocks
                     if b.module is block.module][0]
            assert (plain.mlp(h) - expected).abs().max() > 1e-3
        unmerged, = model(images)
        merged = model.merged_vit()
        plain = MODELS.build(dict(type='VPTViT', _scope_='mmseg',
                                  **FAMILIES[family][0]))
        plain.vit.load_state_dict(merged.state_dict())
        merged_out, = plain.eval()(images)
    assert (unmerged - merged_out).abs().max() < 1e-5
    shapes = {t: tuple(model.updates[0].up[t].shape[:1]) +
              tuple(model.updates[0].down[t].shape[1:]) for t in targets}
    assert shapes['fc2'][1] == shapes[targets[0]][0]  # hidden width


def test_lora_refuses_a_projection_the_blocks_lack():
    with pytest.raises(ValueError, match=r"LoRA targets \['fc3'\] are not "
                       r"projections of this ViT: its blocks have \('q', "
                       r"'k', 'v', 'o', 'fc1', 'fc2'\)"):
        lora_on('mmseg', ('q', 'fc3'))


# ---- the output arguments at the backbone level ----------------------------
def test_timm_output_arguments_at_the_backbone_level():
    """out_indices, final_norm (and the others) given to the backbone give
    what they give inside vit=; in both places they are an error naming
    both."""
    inside = dict(TIMM['vit'], out_indices=(0, 1), final_norm=True)
    outside = {k: v for k, v in inside.items()
               if k not in ('out_indices', 'final_norm')}
    images = torch.randn(2, 3, 28, 28)
    outputs = []
    for backbone in (dict(vit=inside),
                     dict(vit=outside, out_indices=(0, 1), final_norm=True)):
        torch.manual_seed(0)
        model = MODELS.build(dict(type='CVPTViT', _scope_='mmseg',
                                  num_prompts=2, **backbone)).eval()
        with torch.no_grad():
            outputs.append(model(images))
    assert len(outputs[0]) == len(outputs[1]) == 2
    for first, second in zip(*outputs):
        assert torch.equal(first, second)
    with pytest.raises(ValueError, match=r'out_indices is given twice, as '
                       r'model.backbone.out_indices and as '
                       r'model.backbone.vit.out_indices'):
        MODELS.build(dict(type='CVPTViT', _scope_='mmseg',
                          vit=inside, out_indices=(1, )))
