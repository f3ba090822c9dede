"""VPTViT / CVPTViT against mmseg's ViT and against the papers' equations."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import build_optim_wrapper
from mmseg.models.backbones import VisionTransformer
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData

import mmseg_cvpt  # noqa: F401  (registers the backbones)

TINY = dict(
    img_size=32,
    patch_size=8,
    embed_dims=48,
    num_layers=3,
    num_heads=3,
    mlp_ratio=2,
    out_indices=(0, 2),
    final_norm=True)


def build(type_, **kwargs):
    torch.manual_seed(0)
    model = MODELS.build(dict(type=type_, **dict(TINY, **kwargs)))
    model.init_weights()
    return model


def stock_vit():
    torch.manual_seed(0)
    model = VisionTransformer(**TINY)
    model.init_weights()
    model.eval()  # mmseg's ViT.train() returns None
    return model


# ---- the equations, written out ------------------------------------------
def heads(x, num_heads):
    return x.unflatten(-1, (num_heads, -1)).transpose(-3, -2)


def attention(mha, queries_from, keys_from):
    """concat_h softmax(Q_h K_h^T / sqrt(d)) V_h, then W_o, from raw weights."""
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
    q = heads(queries_from @ w_q.T + b_q, mha.num_heads)
    k = heads(keys_from @ w_k.T + b_k, mha.num_heads)
    v = heads(keys_from @ w_v.T + b_v, mha.num_heads)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    out = (scores.softmax(-1) @ v).transpose(-3, -2).flatten(-2)
    return out @ mha.out_proj.weight.T + mha.out_proj.bias


def layer_norm(norm, x):
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias,
                        norm.eps)


def sa(layer, x):
    h = layer_norm(layer.ln1, x)
    return attention(layer.attn.attn, h, h)


def mlp(layer, h):
    fc1, fc2 = layer.ffn.layers[0][0], layer.ffn.layers[1]
    return F.gelu(h @ fc1.weight.T + fc1.bias) @ fc2.weight.T + fc2.bias


def explicit_vpt_deep(model, images):
    tokens = model.vit.embed(images)
    x, hw = tokens.x, tokens.hw_shape
    m = model.num_prompts
    outs = []
    for i, layer in enumerate(model.vit.layers):
        prompts = model.prompts.tokens[i].expand(x.shape[0], -1, -1)
        rest = x[:, 1:] if i == 0 else x[:, 1 + m:]
        x = torch.cat((x[:, :1], prompts, rest), dim=1)
        x = x + sa(layer, x)
        x = x + mlp(layer, layer_norm(layer.ln2, x))
        if i == len(model.vit.layers) - 1:
            x = layer_norm(model.vit.ln1, x)
        if i in model.vit.out_indices:
            outs.append(x[:, 1 + m:])
    return outs, hw


def explicit_cvpt(model, images, position):
    tokens = model.vit.embed(images)
    x, hw = tokens.x, tokens.hw_shape
    outs = []
    for i, layer in enumerate(model.vit.layers):
        P = model.prompts.tokens[i]

        def ca(t):
            return attention(layer.attn.attn, t, P)

        def mlp_res(t):
            return t + mlp(layer, layer_norm(layer.ln2, t))

        if position == 1:
            x = x + ca(x)
            x = mlp_res(x + sa(layer, x))
        elif position == 2:
            x = mlp_res(x + sa(layer, x) + ca(x))
        elif position == 3:
            x = x + sa(layer, x)
            x = mlp_res(x + ca(x))
        elif position == 4:
            x = x + sa(layer, x)
            x = x + mlp(layer, layer_norm(layer.ln2, x) + ca(x))
        else:
            x = mlp_res(x + sa(layer, x))
            x = x + ca(x)
        if i == len(model.vit.layers) - 1:
            x = layer_norm(model.vit.ln1, x)
        if i in model.vit.out_indices:
            outs.append(x[:, 1:])
    return outs, hw


def as_tokens(feature_map):
    return feature_map.flatten(2).transpose(1, 2)


# ---- tests ------------------------------------------------------------------
@pytest.mark.parametrize('type_', ['VPTViT', 'CVPTViT'])
@pytest.mark.parametrize('size', [(32, 32), (40, 56)])
def test_no_prompts_equals_stock_vit(type_, size):
    reference = stock_vit()
    model = build(type_, num_prompts=0)
    model.load_state_dict(reference.state_dict())
    model.eval()
    images = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected, got = reference(images), model(images)
    assert len(got) == 2
    for e, g in zip(expected, got):
        assert g.shape == e.shape
        assert (g - e).abs().max() < 1e-5


def test_vpt_deep_matches_equations():
    model = build('VPTViT', num_prompts=5, prompt_dropout=0.).eval()
    images = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        got = model(images)
        expected, hw = explicit_vpt_deep(model, images)
    assert got[0].shape == (2, 48, 4, 6)
    for g, e in zip(got, expected):
        assert (as_tokens(g) - e).abs().max() < 1e-5


def test_vpt_shallow_keeps_prompt_outputs():
    model = build('VPTViT', num_prompts=4, prompt_depth='shallow',
                  prompt_dropout=0.).eval()
    assert model.prompts.tokens.shape == (1, 4, 48)
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        got = model(images)[-1]
        x = model.vit.embed(images).x
        x = torch.cat((x[:, :1], model.prompts.tokens[0][None], x[:, 1:]), 1)
        for layer in model.vit.layers:
            x = x + sa(layer, x)
            x = x + mlp(layer, layer_norm(layer.ln2, x))
        x = layer_norm(model.vit.ln1, x)
    assert (as_tokens(got) - x[:, 5:]).abs().max() < 1e-5


@pytest.mark.parametrize('position', [1, 2, 3, 4, 5])
def test_cvpt_matches_equations(position):
    model = build('CVPTViT', num_prompts=6, ca_position=position,
                  prompt_dropout=0.).eval()
    images = torch.randn(2, 3, 40, 32)
    with torch.no_grad():
        got = model(images)
        expected, _ = explicit_cvpt(model, images, position)
    for g, e in zip(got, expected):
        assert (as_tokens(g) - e).abs().max() < 1e-5


def test_cvpt_prompts_change_the_output():
    model = build('CVPTViT', num_prompts=6, prompt_dropout=0.).eval()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model(images)[-1]
        model.prompts.tokens.mul_(3.)
        after = model(images)[-1]
    assert (before - after).abs().max() > 1e-3


def test_shared_state_dict_has_no_cross_attention_weights():
    stock_keys = set(stock_vit().state_dict())
    model = build('CVPTViT', num_prompts=4)
    # _extra_state: the record of the frozen weights' base checkpoint
    assert set(model.state_dict()) == stock_keys | {'prompts.tokens',
                                                    '_extra_state'}
    assert model.prompts.tokens.shape == (3, 4, 48)


def segmentor(backbone):
    return MODELS.build(
        dict(
            type='EncoderDecoder',
            _scope_='mmseg',
            data_preprocessor=dict(
                type='SegDataPreProcessor', size=(32, 32), pad_val=0,
                seg_pad_val=255),
            backbone=backbone,
            decode_head=dict(
                type='FCNHead', in_channels=48, in_index=1, channels=16,
                num_convs=1, num_classes=4, norm_cfg=dict(type='BN'),
                loss_decode=dict(type='CrossEntropyLoss'))))


@pytest.mark.parametrize('type_', ['VPTViT', 'CVPTViT'])
def test_training_step_changes_only_prompts_and_head(type_):
    torch.manual_seed(0)
    model = segmentor(dict(type=type_, num_prompts=4, drop_path_rate=0.2,
                           **TINY))
    model.init_weights()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optim = build_optim_wrapper(
        model, dict(type='OptimWrapper',
                    optimizer=dict(type='AdamW', lr=1e-2)))
    samples = []
    for _ in range(2):
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, 32, 32)))
        sample.set_metainfo(dict(img_shape=(32, 32), ori_shape=(32, 32),
                                 pad_shape=(32, 32)))
        samples.append(sample)
    data = dict(inputs=[torch.rand(3, 32, 32) * 255 for _ in range(2)],
                data_samples=samples)
    model.train()
    assert not model.backbone.vit.layers.training  # frozen blocks stay in eval
    model.train_step(data, optim)
    changed = {k for k, v in model.state_dict().items()
               if v.dtype.is_floating_point and not torch.equal(v, before[k])}
    backbone_changed = {k for k in changed if k.startswith('backbone.')}
    assert backbone_changed == {'backbone.prompts.tokens'}
    assert any(k.startswith('decode_head.conv_seg') for k in changed)


def test_frozen_parts_have_no_dropout_in_train_mode():
    model = build('CVPTViT', num_prompts=4, prompt_dropout=0.,
                  drop_path_rate=0.5, drop_rate=0.3)
    images = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        expected = model(images)[-1]
    model.train()
    assert model.prompts.training
    with torch.no_grad():
        got = model(images)[-1]
    assert torch.equal(got, expected)


@pytest.mark.parametrize('mode,trainable', [('copy', True), ('random', True),
                                            ('random', False)])
def test_cross_attention_weight_options(mode, trainable, tmp_path):
    reference = stock_vit()
    path = tmp_path / 'vit.pth'
    torch.save(reference.state_dict(), path)
    model = MODELS.build(
        dict(type='CVPTViT', num_prompts=4, ca_weights=mode,
             ca_trainable=trainable,
             init_cfg=dict(type='Pretrained', checkpoint=str(path)), **TINY))
    model.init_weights()
    trainable_names = {n for n, p in model.named_parameters()
                       if p.requires_grad}
    ca_names = {n for n, _ in model.named_parameters()
                if n.startswith('cross_attns.')}
    assert len(ca_names) == 3 * 4  # in_proj w/b, out_proj w/b per layer
    expected = {'prompts.tokens'} | (ca_names if trainable else set())
    assert trainable_names == expected
    same = torch.equal(model.cross_attns[1].in_proj_weight,
                       reference.layers[1].attn.attn.in_proj_weight)
    assert same == (mode == 'copy')


def test_pretrained_loading_reports_and_rejects_missing_weights(tmp_path):
    reference = stock_vit()
    good = tmp_path / 'seg.pth'
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in reference.state_dict().items()}},
               good)
    model = MODELS.build(dict(
        type='CVPTViT', num_prompts=4, init_cfg=dict(
            type='Pretrained', checkpoint=str(good), prefix='backbone.'),
        **TINY))
    model.init_weights()
    assert torch.equal(model.vit.pos_embed, reference.pos_embed)

    state = reference.state_dict()
    del state['layers.1.ln2.weight']
    bad = tmp_path / 'bad.pth'
    torch.save(state, bad)
    model = MODELS.build(dict(
        type='VPTViT', num_prompts=4,
        init_cfg=dict(type='Pretrained', checkpoint=str(bad)), **TINY))
    with pytest.raises(KeyError, match=r'layers\.1\.ln2\.weight'):
        model.init_weights()

    state = dict(reference.state_dict())
    state['patch_embed.projection.bias'] = torch.zeros(48)
    torch.save(state, bad)
    model = MODELS.build(dict(
        type='CVPTViT', num_prompts=4,
        init_cfg=dict(type='Pretrained', checkpoint=str(bad)), **TINY))
    with pytest.raises(KeyError, match='patch_bias=True'):
        model.init_weights()


def test_pretrained_pos_embed_is_resized(tmp_path):
    reference = stock_vit()
    path = tmp_path / 'vit.pth'
    torch.save(reference.state_dict(), path)
    model = MODELS.build(dict(
        type='CVPTViT', num_prompts=2,
        init_cfg=dict(type='Pretrained', checkpoint=str(path)),
        **dict(TINY, img_size=64)))
    model.init_weights()
    assert model.vit.pos_embed.shape == (1, 1 + 8 * 8, 48)


@pytest.mark.parametrize('kwargs,match', [
    (dict(num_prompts=-1), 'num_prompts'),
    (dict(num_prompts=2.5), 'num_prompts'),
    (dict(num_prompts=True), 'num_prompts'),
    (dict(num_prompts=4, prompt_depth='middle'), 'prompt_depth'),
    (dict(num_prompts=4, prompt_depth=4), 'prompt_depth.*num_layers=3'),
    (dict(num_prompts=4, prompt_depth=0), 'prompt_depth'),
    (dict(num_prompts=4, prompt_dropout=1.5), 'prompt_dropout'),
    (dict(num_prompts=4, prompt_cfg=dict(type='LayerPrompts', init='zeros')),
     'prompt init'),
    (dict(num_prompts=4, prompt_cfg=dict(type='LayerPrompts', num_layers=2)),
     'num_layers'),
])
@pytest.mark.parametrize('type_', ['VPTViT', 'CVPTViT'])
def test_bad_prompt_arguments(type_, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(dict(type=type_, **dict(TINY, **kwargs)))


@pytest.mark.parametrize('kwargs,match', [
    (dict(ca_position=0), 'ca_position'),
    (dict(ca_position=6), 'ca_position'),
    (dict(ca_weights='tied'), 'ca_weights'),
    (dict(ca_weights='shared', ca_trainable=True), 'ca_trainable'),
])
def test_bad_cross_attention_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(dict(type='CVPTViT', num_prompts=4, **TINY, **kwargs))


@pytest.mark.parametrize('num_prompts', [10, 200])
def test_vit_b16_parameter_counts(num_prompts):
    vit_b = dict(img_size=512, patch_size=16, embed_dims=768, num_layers=12,
                 num_heads=12, out_indices=(2, 5, 8, 11))
    stock_total = sum(p.numel() for p in VisionTransformer(**vit_b).parameters())
    model = MODELS.build(dict(type='CVPTViT', num_prompts=num_prompts, **vit_b))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert trainable == 12 * num_prompts * 768
    assert total == stock_total + trainable
    assert {92160: 10, 1843200: 200}[trainable] == num_prompts
