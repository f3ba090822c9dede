"""The fast attention paths against the plain equations, and the prompt
caches of CVPT and of fast VPT."""
import math

import pytest
import torch
from mmseg.registry import MODELS
from torch import nn

import mmseg_cvpt  # noqa: F401  (registers the backbones)
from mmseg_cvpt.models import attention
from mmseg_cvpt.models.backbones import cvpt_vit, vpt_vit
from test_backbones import layer_norm, mlp as block_mlp, sa as block_sa

TOL = 1e-4
DIMS, HEADS = 48, 4  # folding pays below m = D / (H - 1) = 16 (eval)
TINY = dict(img_size=32, patch_size=8, embed_dims=DIMS, num_layers=3,
            num_heads=HEADS, mlp_ratio=2, out_indices=(0, 2),
            final_norm=True)
PROMPT_COUNTS = [1, 5, 15, 17, 40]  # below and above the break-even


def random_mha(seed=0):
    torch.manual_seed(seed)
    mha = nn.MultiheadAttention(DIMS, HEADS, batch_first=True)
    for param in mha.parameters():  # biases are zero by default
        nn.init.normal_(param, std=0.3)
    return mha.eval()


def build(type_='CVPTViT', **kwargs):
    torch.manual_seed(0)
    # _scope_: other test files may leave another default scope behind
    cfg = dict(TINY, type=type_, _scope_='mmseg', prompt_dropout=0.)
    cfg.update(kwargs)
    model = MODELS.build(cfg)
    model.init_weights()
    for layer in model.vit.layers:  # non-zero biases, so that c and b_o matter
        nn.init.normal_(layer.attn.attn.in_proj_bias, std=0.3)
        nn.init.normal_(layer.attn.attn.out_proj.bias, std=0.3)
    return model.eval()


# ---- the plain equations ----------------------------------------------------
def plain_attention(mha, queries_from, keys_from):
    """concat_h softmax((x W_q^h + b_q^h)(P W_k^h + b_k^h)^T / sqrt(d))
    (P W_v^h + b_v^h), then W_o, b_o."""
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
    outs = []
    head = DIMS // HEADS
    for h in range(HEADS):
        rows = slice(h * head, (h + 1) * head)
        q = queries_from @ w_q[rows].T + b_q[rows]
        k = keys_from @ w_k[rows].T + b_k[rows]
        v = keys_from @ w_v[rows].T + b_v[rows]
        scores = q @ k.transpose(-1, -2) / math.sqrt(head)
        outs.append(scores.softmax(-1) @ v)
    return torch.cat(outs, -1) @ mha.out_proj.weight.T + mha.out_proj.bias


def plain_outputs(model, x, index, num_patches, outs):
    """Final norm after the last layer; the patches of the output layers."""
    if index == len(model.vit.layers) - 1:
        x = layer_norm(model.vit.ln1, x)
    if index in model.vit.out_indices:
        outs.append(x[:, x.shape[1] - num_patches:])
    return x


def plain_vpt(model, images, prompts=None):
    """VPT at any depth, from the paper's sequence equations: the prompts
    of layer i < k enter after the class token, replacing layer i - 1's
    prompt outputs; ``prompts`` defaults to the model's (no dropout)."""
    prompts = model.prompts() if prompts is None else prompts
    tokens = model.vit.embed(images)
    x, (height, width) = tokens.x, tokens.hw_shape
    num_prefix, num_prompts = int(model.vit.with_cls_token), model.num_prompts
    outs = []
    for i, layer in enumerate(model.vit.layers):
        if i < len(prompts):
            rest = x[:, num_prefix + (num_prompts if i else 0):]
            x = torch.cat((x[:, :num_prefix],
                           prompts[i].expand(len(x), -1, -1), rest), dim=1)
        x = x + block_sa(layer, x)
        x = x + block_mlp(layer, layer_norm(layer.ln2, x))
        x = plain_outputs(model, x, i, height * width, outs)
    return outs


def plain_cvpt(model, images):
    """CVPT at any ca_position, from the paper's block equations."""
    tokens = model.vit.embed(images)
    x, (height, width) = tokens.x, tokens.hw_shape
    outs = []
    for i, layer in enumerate(model.vit.layers):

        def ca(t):
            return plain_attention(layer.attn.attn, t, model.prompts()[i])

        def sa(t):
            return block_sa(layer, t)

        def mlp(h):
            return block_mlp(layer, h)

        def mlp_res(t):
            return t + mlp(layer_norm(layer.ln2, t))

        position = model.ca_position
        if position == 1:
            x = x + ca(x)
            x = mlp_res(x + sa(x))
        elif position == 2:
            x = mlp_res(x + sa(x) + ca(x))
        elif position == 3:
            x = x + sa(x)
            x = mlp_res(x + ca(x))
        elif position == 4:
            x = x + sa(x)
            x = x + mlp(layer_norm(layer.ln2, x) + ca(x))
        else:
            x = mlp_res(x + sa(x))
            x = x + ca(x)
        x = plain_outputs(model, x, i, height * width, outs)
    return outs


def as_tokens(feature_map):
    return feature_map.flatten(2).transpose(1, 2)


def max_diff(got, expected):
    return max((as_tokens(g) - e).abs().max().item()
               for g, e in zip(got, expected))


# ---- the attention functions ------------------------------------------------
def test_self_attention_matches_equation():
    mha = random_mha()
    x = torch.randn(2, 9, DIMS)
    got = attention.self_attention(mha, x)
    assert (got - plain_attention(mha, x, x)).abs().max() < TOL


@pytest.mark.parametrize('num_prompts', [1, 40])
def test_self_attention_with_prompts_matches_equation(num_prompts):
    """The rows of x in the self-attention of [x; P], from the prompts'
    keys and values alone."""
    mha = random_mha()
    x, prompts = torch.randn(2, 9, DIMS), torch.randn(num_prompts, DIMS)
    got = attention.self_attention_with_prompts(
        mha, x, attention.packed_keys_values(mha, prompts))
    sequence = torch.cat((x, prompts.expand(2, -1, -1)), dim=1)
    expected = plain_attention(mha, x, sequence)
    assert (got - expected).abs().max() < TOL


@pytest.mark.parametrize('num_prompts', PROMPT_COUNTS)
def test_folded_and_unfolded_cross_attention_match_equation(num_prompts):
    mha = random_mha()
    x, prompts = torch.randn(3, 7, DIMS), torch.randn(num_prompts, DIMS)
    expected = plain_attention(mha, x, prompts)
    keys, values = attention.prompt_keys_values(mha, prompts)
    residual = torch.randn_like(x)
    folded_prompts = attention.fold_prompts(mha, prompts)
    for cross_attention, operands in (
        (attention.cross_attention, (keys, values)),
        (attention.folded_cross_attention, (folded_prompts, )),
    ):
        alone = cross_attention(mha, x, *operands)
        added = cross_attention(mha, x, *operands, residual=residual)
        assert (alone - expected).abs().max() < TOL
        assert (added - residual - expected).abs().max() < TOL


@pytest.mark.parametrize('num_prompts', [3, 40])
def test_both_forms_give_the_equation_gradients(num_prompts):
    mha = random_mha().requires_grad_(False)
    x = torch.randn(2, 7, DIMS, requires_grad=True)
    prompts = torch.randn(num_prompts, DIMS, requires_grad=True)

    def grads(cross_attention):
        out = cross_attention()
        return torch.autograd.grad((out * out.detach().cos()).sum(),
                                   (x, prompts))

    expected = grads(lambda: x + plain_attention(mha, x, prompts))
    unfolded = grads(lambda: attention.cross_attention(
        mha, x, *attention.prompt_keys_values(mha, prompts), residual=x))
    folded = grads(lambda: attention.folded_cross_attention(
        mha, x, attention.fold_prompts(mha, prompts), residual=x))
    for got in (unfolded, folded):
        for g, e in zip(got, expected):
            assert (g - e).abs().max() < TOL


def test_folded_form_honours_attention_dropout():
    mha = random_mha()
    mha.dropout = 0.5
    x, prompts = torch.randn(2, 7, DIMS), torch.randn(5, DIMS)
    exact = attention.folded_cross_attention(
        mha, x, attention.fold_prompts(mha, prompts))
    mha.train()
    folded = attention.fold_prompts(mha, prompts)
    assert folded.out_bias is mha.out_proj.bias  # b_o stays out of U
    torch.manual_seed(0)
    first = attention.folded_cross_attention(mha, x, folded)
    second = attention.folded_cross_attention(mha, x, folded)
    assert (first - exact).abs().max() > 1e-3
    assert (first - second).abs().max() > 1e-3
    folded_in_eval = attention.fold_prompts(mha.eval(), prompts)
    with pytest.raises(ValueError, match='fold_prompts in the mode'):
        attention.folded_cross_attention(mha.train(), x, folded_in_eval)


def test_cache_follows_the_attention_mode(projections):
    model = build(num_prompts=4)
    images = torch.randn(1, 3, 32, 32)
    mha = model.vit.layers[0].attn.attn
    mha.dropout = 0.5
    with torch.no_grad():
        model(images)
        mha.train()  # only this block's attention: dropout, b_o kept out
        model(images)
    assert projections() == 4


@pytest.mark.parametrize('row_length', [1, 10, 15])
def test_short_row_softmax_matches_torch(row_length):
    logits = torch.randn(3, 4, row_length, dtype=torch.double,
                         requires_grad=True)
    assert torch.allclose(attention.ShortRowSoftmax.apply(logits),
                          logits.softmax(-1))
    assert torch.autograd.gradcheck(attention.ShortRowSoftmax.apply,
                                    (logits, ))
    with torch.no_grad():  # the inference path, no autograd node
        assert torch.allclose(attention.head_softmax(logits),
                              logits.softmax(-1))


def test_break_even_of_folding():
    mha = nn.MultiheadAttention(768, 12)
    # inference: H m < D + m  <=>  m < D / (H - 1) = 69.8
    assert attention.prefer_folded(mha, 69, with_grad=False)
    assert not attention.prefer_folded(mha, 70, with_grad=False)
    # training: 6 H m D < 4 D^2 + 6 m D  <=>  m < 2 D / (3 (H - 1)) = 46.5
    assert attention.prefer_folded(mha, 46, with_grad=True)
    assert not attention.prefer_folded(mha, 47, with_grad=True)


# ---- the backbone -----------------------------------------------------------
@pytest.fixture(params=['folded', 'unfolded'])
def form(request, monkeypatch):
    """Force one form of the cross-attention in CVPTViT."""
    fold = request.param == 'folded'
    monkeypatch.setattr(cvpt_vit, 'prefer_folded', lambda *args: fold)
    return request.param


@pytest.mark.parametrize('position', [1, 2, 3, 4, 5])
@pytest.mark.parametrize('num_prompts', [2, 17])
def test_cvpt_matches_equations_in_both_forms(form, position, num_prompts):
    model = build(num_prompts=num_prompts, ca_position=position)
    images = torch.randn(2, 3, 32, 40)
    with torch.no_grad():
        got = model(images)
        expected = plain_cvpt(model, images)
    assert max_diff(got, expected) < TOL


def test_automatic_choice_matches_equations():
    for num_prompts in PROMPT_COUNTS:
        model = build(num_prompts=num_prompts)
        images = torch.randn(1, 3, 32, 32)
        with torch.no_grad():
            assert max_diff(model(images), plain_cvpt(model, images)) < TOL


class Counter:
    """Wraps a projection function and counts its calls."""

    def __init__(self, function):
        self.function, self.calls = function, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.function(*args, **kwargs)


@pytest.fixture
def projections(monkeypatch):
    """Counts the prompt projections CVPTViT (either form) and VPTViT
    (its fast form) compute."""
    counters = []
    for module, name in ((cvpt_vit, 'fold_prompts'),
                         (cvpt_vit, 'prompt_keys_values'),
                         (vpt_vit, 'packed_keys_values')):
        counters.append(Counter(getattr(module, name)))
        monkeypatch.setattr(module, name, counters[-1])
    return lambda: sum(c.calls for c in counters)


# Both backbones cache their prompts' side in eval mode (..prompt_cache).
PLAIN = {'CVPTViT': plain_cvpt, 'VPTViT': plain_vpt}


@pytest.fixture(params=list(PLAIN))
def backbone(request):
    return request.param


@pytest.mark.parametrize('num_prompts', [2, 40])
def test_eval_cache_is_hit_and_holds_no_graph(projections, backbone,
                                              num_prompts):
    model = build(backbone, num_prompts=num_prompts)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        first = model(images)
    assert projections() == 3  # once per layer for the whole batch
    with torch.no_grad():
        second = model(images)
    assert projections() == 3  # cache hit
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    for _, operands in model.prompt_cache._entries.values():
        assert not any(t.requires_grad for t in operands if t is not None)


def test_train_invalidates_cache(projections, backbone):
    model = build(backbone, num_prompts=4)
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        model(images)
        model.train()
        model(images)  # train mode: recomputed, not cached
        assert projections() == 6
        model.eval()
        model(images)
    assert projections() == 9


def test_cache_under_autocast_is_hit_and_keyed_by_precision(
        projections, backbone):
    """bf16 autocast keeps the cache (and, at 2 prompts, CVPT's folded
    form): hit on the second bf16 pass, a float32 pass after it gets its
    own float32 entries, not the bf16 ones."""
    model = build(backbone, num_prompts=2)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        low = model(images)
        model(images)
    assert projections() == 3
    with torch.no_grad():
        full = model(images)
    assert projections() == 6
    for _, operands in model.prompt_cache._entries.values():
        assert all(t.dtype == torch.float32 for t in operands
                   if t is not None)
    assert all((a.float() - b).abs().max() < 0.1 for a, b in zip(low, full))


def test_load_state_dict_invalidates_cache(projections, backbone):
    model = build(backbone, num_prompts=4)
    other = build(backbone, num_prompts=4)
    with torch.no_grad():
        other.prompts.tokens.normal_()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model(images)
        model.load_state_dict(other.state_dict())
        after = model(images)
        expected = other(images)
    assert projections() == 9
    assert max_diff(before, [as_tokens(e) for e in expected]) > 1e-3
    assert all(torch.equal(a, e) for a, e in zip(after, expected))


@pytest.mark.parametrize('num_prompts', [2, 40])
def test_optimiser_step_invalidates_cache(backbone, num_prompts):
    model = build(backbone, num_prompts=num_prompts)
    optimiser = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=0.5)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(images)  # fills the cache
    # eval mode with gradients: the cache is bypassed, prompts get gradients
    loss = sum(out.pow(2).mean() for out in model(images))
    loss.backward()
    assert model.prompts.tokens.grad.abs().max() > 0
    optimiser.step()
    with torch.no_grad():
        after = model(images)
        expected = PLAIN[backbone](model, images)
    assert max_diff(before, expected) > 1e-3
    assert max_diff(after, expected) < TOL


def test_cache_skipped_when_gradients_flow_to_prompts(projections, backbone):
    model = build(backbone, num_prompts=4)
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        model(images)
    model(images)[-1].sum().backward()
    assert projections() == 6
    assert model.prompts.tokens.grad is not None
