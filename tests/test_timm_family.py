"""The timm family: our backbones on timm's own VisionTransformer modules
and Eva modules (DINOv2 with and without registers, CLIP, SigLIP, EVA-02),
small models built and saved here."""
import math
import os.path as osp

import pytest
import timm
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from safetensors.torch import save_file
from timm.layers import apply_rot_embed_cat

from mmseg_cvpt.apis import build_model
from mmseg_cvpt.engine import load_config
from mmseg_cvpt.models import calibrate_prompts
from tiny_runs import (REPO, check_test_output, data_options,
                       pretrain_tiny_vit, run_in_process)

# (timm model, configured input size, patch size)
MODELS_UNDER_TEST = [
    ('vit_base_patch14_reg4_dinov2', 56, 14),
    ('vit_base_patch14_dinov2', 56, 14),
    ('vit_base_patch16_clip_224', 64, 16),
    ('vit_base_patch16_siglip_224', 64, 16),
    ('eva02_base_patch14_224', 56, 14),  # RoPE, SwiGLU, sub-LN MLP
    # Eva with DINOv3's RoPE (rotate-half), 4 storage tokens, layer scale
    ('vit_small_patch16_dinov3', 64, 16),
    ('vit_small_patch16_dinov3_qkvb', 64, 16),  # q, k and v biases
    ('vit_small_plus_patch16_dinov3', 64, 16),  # SwiGLU
]
DINOV2_REG = MODELS_UNDER_TEST[0]
SIGLIP = MODELS_UNDER_TEST[3]
EVA02 = MODELS_UNDER_TEST[4]
DINOV3_QKVB = MODELS_UNDER_TEST[6]
SMALL = dict(embed_dim=48, depth=3, num_heads=4, dynamic_img_size=True)
M = 4  # prompts per layer


def timm_vit(name, size, **extra):
    return dict(type='TimmViT', model_name=name, img_size=size,
                out_indices=(0, 2), **SMALL, **extra)


def backbone(type_, model, num_prompts=M, vit_extra={}, **kwargs):
    """Our backbone on the small timm model, its random weights made less
    special (layer scales around 1, biases non-zero)."""
    name, size, _ = model
    torch.manual_seed(0)
    built = MODELS.build(dict(type=type_, _scope_='mmseg',
                              num_prompts=num_prompts, prompt_dropout=0.,
                              vit=timm_vit(name, size, **vit_extra),
                              **kwargs))
    with torch.no_grad():
        for key, tensor in built.vit.named_parameters():
            if key.endswith(('gamma', 'gamma_1', 'gamma_2')):
                tensor.copy_(1 + 0.1 * torch.randn_like(tensor))
            elif key.endswith('bias'):
                tensor.copy_(0.1 * torch.randn_like(tensor))
    return built.eval()


def other_size(model, batch=2):
    """Images of a size other than the configured one."""
    _, size, patch = model
    return torch.randn(batch, 3, size + 2 * patch, size - patch)


def max_diff(outputs, expected):
    return max((a - b).abs().max().item() for a, b in zip(outputs, expected))


@pytest.mark.parametrize('model', MODELS_UNDER_TEST, ids=lambda m: m[0])
def test_features_are_timms_intermediates(model):
    """Without prompts the outputs are timm's forward_intermediates (NCHW,
    no norm) at the chosen blocks, at another input size."""
    ours = backbone('VPTViT', model, num_prompts=0)
    images = other_size(model)
    with torch.no_grad():
        features = ours(images)
        expected = ours.vit.model.forward_intermediates(
            images, indices=[0, 2], norm=False, output_fmt='NCHW',
            intermediates_only=True)
    assert [f.shape for f in features] == [e.shape for e in expected]
    assert max_diff(features, expected) == 0


def explicit_cross_attention(attn, x, prompts):
    """softmax(Q K^T / sqrt(d)) V, heads concatenated, then proj: queries
    from x, keys and values from the prompts, with timm's qkv weights."""
    heads, dims = attn.num_heads, x.shape[-1]
    w_q, w_k, w_v = attn.qkv.weight.chunk(3)
    b_q, b_k, b_v = attn.qkv.bias.chunk(3)

    def split(t):
        return t.unflatten(-1, (heads, dims // heads)).transpose(-3, -2)

    q, k, v = split(x @ w_q.T + b_q), split(prompts @ w_k.T + b_k), \
        split(prompts @ w_v.T + b_v)
    probs = (q @ k.transpose(-1, -2) / math.sqrt(dims // heads)).softmax(-1)
    return attn.proj((probs @ v).transpose(-3, -2).flatten(-2))


def explicit_forward(model, images, method):
    """VPT-deep ([prefix, P_i, patches], timm's own blocks) or CVPT at
    position 3 (x += ls1 SA; x += ls1 CA(x, P_i); x += ls2 MLP), written
    from timm's modules; the patch maps of blocks 0 and 2."""
    vit = model.vit.model
    x = vit.norm_pre(vit._pos_embed(vit.patch_embed(images)))
    prefix, prompts = vit.num_prefix_tokens, model.prompts.tokens
    height, width = vit.patch_embed.dynamic_feat_size(images.shape[-2:])
    outs = []
    for i, block in enumerate(vit.blocks):
        if method == 'vpt':
            patches = x[:, prefix if i == 0 else prefix + M:]
            x = block(torch.cat((x[:, :prefix],
                                 prompts[i].expand(len(x), -1, -1), patches),
                                1))
            patches = x[:, prefix + M:]
        else:
            x = x + block.ls1(block.attn(block.norm1(x)))
            x = x + block.ls1(explicit_cross_attention(block.attn, x,
                                                       prompts[i]))
            x = x + block.ls2(block.mlp(block.norm2(x)))
            patches = x[:, prefix:]
        if i in (0, 2):
            outs.append(patches.transpose(1, 2).reshape(
                len(x), -1, height, width))
    return outs


@pytest.mark.parametrize('method, type_, kwargs', [
    ('vpt', 'VPTViT', dict(prompt_form='auto')),
    ('vpt', 'VPTViT', dict(prompt_form='reference')),
    ('cvpt', 'CVPTViT', dict()),  # folded: M = 4 < D / (H - 1)
    ('cvpt', 'CVPTViT', dict(num_prompts=20)),  # unfolded
])
def test_methods_equal_their_equations_on_dinov2_with_registers(
        method, type_, kwargs):
    """Prompts after all five prefix tokens (class token, 4 registers), no
    position embedding; CVPT's cross-attention through the layer scale, in
    both of its forms."""
    model = backbone(type_, DINOV2_REG, **kwargs)
    images = other_size(DINOV2_REG)
    with torch.no_grad():
        expected = explicit_forward(model, images, method)
        got = model(images)
    assert max_diff(got, expected) < 1e-5
    model.train()
    got = model(images)  # dropout 0: the training forward too
    assert max_diff(got, expected) < 1e-5


# EVA-02 with every extra of its attention: q / k norms, the sub-LN before
# the output projection (EVA-02 CLIP's scale_attn_inner) and layer scales.
EVA_EXTRAS = dict(qk_norm=True, scale_attn_inner=True, init_values=0.5)


def rotated(t, rope, first_patch, half=False):
    """EVA's RoPE on the tokens from ``first_patch`` on of t (B, H, N, d)
    (DINOv3's: ``half``, its rotate-half layout)."""
    return torch.cat((t[:, :, :first_patch], apply_rot_embed_cat(
        t[:, :, first_patch:], rope, half=half)), dim=2)


def eva_projections(attn, x):
    """x W_t^T + b_t for t = q, k, v: EVA-02's q / k / v_proj, or the fused
    qkv with q_bias, a zero key bias (DINOv3's _qkvb: k_bias) and v_bias."""
    if getattr(attn, 'qkv', None) is None:
        return attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
    bias = None
    if attn.q_bias is not None:
        k_bias = attn.k_bias if getattr(attn, 'k_bias', None) is not None \
            else torch.zeros_like(attn.q_bias)
        bias = torch.cat((attn.q_bias, k_bias, attn.v_bias))
    return F.linear(x, attn.qkv.weight, bias).chunk(3, dim=-1)


def eva_attention(attn, x, rope, first_patch, prompts=None):
    """EVA's attention from its modules: q = RoPE(q_norm(x W_q^T + b_q)) on
    the patches (the tokens from ``first_patch`` on); keys and values of x
    (k = RoPE(k_norm(.)) on the patches as well) or, for the cross-attention,
    of the prompts (k_norm, no RoPE); then the sub-LN and proj."""
    def split(t):
        return t.unflatten(-1, (attn.num_heads, -1)).transpose(-3, -2)

    source = x if prompts is None else prompts
    half = attn.rotate_half
    q = rotated(attn.q_norm(split(eva_projections(attn, x)[0])), rope,
                first_patch, half)
    _, k, v = eva_projections(attn, source)
    k = attn.k_norm(split(k))
    if prompts is None:
        k = rotated(k, rope, first_patch, half)
    probs = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1)
    out = (probs @ split(v)).transpose(-3, -2).flatten(-2)
    return attn.proj(attn.norm(out))


def explicit_eva_forward(model, images, method):
    """VPT-deep ([cls, P_i, patches], RoPE on the patches only) or CVPT at
    position 3 (x += g1 SA(LN1 x); x += g1 CA(x, P_i); x += g2 MLP(LN2 x))
    on timm's EVA blocks; the patch maps of blocks 0 and 2."""
    vit = model.vit.model
    x, rope = vit._pos_embed(vit.patch_embed(images))
    x = vit.norm_pre(x)
    prefix, prompts = vit.num_prefix_tokens, model.prompts.tokens
    height, width = vit.patch_embed.dynamic_feat_size(images.shape[-2:])
    outs = []
    for i, block in enumerate(vit.blocks):
        if method == 'vpt':
            patches = x[:, prefix if i == 0 else prefix + M:]
            x = torch.cat((x[:, :prefix], prompts[i].expand(len(x), -1, -1),
                           patches), 1)
            x = x + block.gamma_1 * eva_attention(
                block.attn, block.norm1(x), rope, prefix + M)
        else:
            x = x + block.gamma_1 * block.attn(block.norm1(x), rope=rope)
            x = x + block.gamma_1 * eva_attention(block.attn, x, rope,
                                                  prefix, prompts[i])
        x = x + block.gamma_2 * block.mlp(block.norm2(x))
        patches = x[:, prefix + M:] if method == 'vpt' else x[:, prefix:]
        if i in (0, 2):
            outs.append(patches.transpose(1, 2).reshape(
                len(x), -1, height, width))
    return outs


EVA_METHODS = [  # (equation, backbone, arguments)
    ('vpt', 'VPTViT', dict(prompt_form='auto')),
    ('vpt', 'VPTViT', dict(prompt_form='reference')),
    ('cvpt', 'CVPTViT', dict()),  # unfolded: RoPE on the queries
]


@pytest.mark.parametrize('method, type_, kwargs', EVA_METHODS)
def test_methods_equal_their_equations_on_eva02(method, type_, kwargs):
    """No rotary embedding on the prompts; CVPT's queries through q_norm and
    RoPE, its prompts' keys through k_norm, its output through the sub-LN
    and the layer scale."""
    model = backbone(type_, EVA02, vit_extra=EVA_EXTRAS, **kwargs)
    assert_eva_equation(model, EVA02, method)


def assert_eva_equation(model, spec, method):
    """The model equals ``explicit_eva_forward`` at another input size, in
    eval mode and (dropout 0) in train mode."""
    images = other_size(spec)
    with torch.no_grad():
        expected = explicit_eva_forward(model, images, method)
        got = model(images)
        assert max_diff(got, expected) < 1e-5
        model.train()
        assert max_diff(model(images), expected) < 1e-5


@pytest.mark.parametrize('method, type_, kwargs', EVA_METHODS)
def test_methods_equal_their_equations_on_dinov3(method, type_, kwargs):
    """DINOv3 (timm's Eva): prompts after the class token and 4 storage
    tokens, never rotated; its rotate-half RoPE on the patches' queries and
    keys; q, k and v biases (the _qkvb variant, random here: under RoPE a
    key bias is rotated with its key, so it changes the attention); the
    layer scales on both branches."""
    model = backbone(type_, DINOV3_QKVB, **kwargs)
    assert model.vit.model.blocks[0].attn.rotate_half
    with torch.no_grad():  # a buffer: what a checkpoint's qkv bias gives
        for block in model.vit.model.blocks:
            block.attn.k_bias.copy_(0.1 * torch.randn_like(block.attn.k_bias))
    assert_eva_equation(model, DINOV3_QKVB, method)


def test_bpt_statistics_on_eva02_and_a_clear_error_with_k_norm():
    """BPT's z = W_k^T RoPE(q) on EVA-02 (RoPE-rotated queries of the
    prompt-free model's LN1 tokens); no statistics where keys are normed."""
    bpt = backbone('VPTViT', EVA02,
                   prompt_cfg=dict(type='BilinearPrompts', rank=8))
    images = other_size(EVA02)
    statistics, _ = calibrate_prompts(bpt, [images])
    vit = bpt.vit.model
    x, rope = vit._pos_embed(vit.patch_embed(images))
    attn = vit.blocks[0].attn
    with torch.no_grad():
        q = attn.q_proj(vit.blocks[0].norm1(vit.norm_pre(x)))
        q = rotated(q.unflatten(-1, (attn.num_heads, -1)).transpose(1, 2),
                    rope, vit.num_prefix_tokens)
        z = (q.transpose(1, 2).flatten(-2) @ attn.k_proj.weight).flatten(0, 1)
    expected = (z.double().T @ z.double()) / len(z)
    assert torch.allclose(statistics[0], expected, rtol=1e-4,
                          atol=1e-6 * expected.abs().max().item())
    normed = backbone('VPTViT', EVA02, vit_extra=EVA_EXTRAS,
                      prompt_cfg=dict(type='BilinearPrompts', rank=8))
    with pytest.raises(ValueError, match='normalises its keys'):
        calibrate_prompts(normed, [images])


@pytest.mark.parametrize('spec', [DINOV2_REG, DINOV3_QKVB],
                         ids=lambda m: m[0])
def test_bpt_calibrates_and_davpt_losses_train_on_dinov2_and_dinov3(spec):
    bpt = backbone('VPTViT', spec,
                   prompt_cfg=dict(type='BilinearPrompts', rank=8))
    statistics, tokens = calibrate_prompts(bpt, [other_size(spec)])
    assert statistics.shape == (3, 48, 48) and bpt.prompts.is_calibrated
    assert tokens == 2 * (5 + 6 * 3)  # images x (prefix + patches)
    davpt = backbone('VPTViT', DINOV2_REG, addons=dict(
        guidance=dict(type='ProxyGuidance', num_guided=2)))
    davpt.guidance.initialise(2)
    davpt.guidance.recluster()
    davpt.train()
    loss = sum(out.mean() for out in davpt(other_size(DINOV2_REG)))
    losses = davpt.guidance.losses(torch.tensor([0, 1]))
    (loss + sum(losses.values())).backward()
    assert all(value > 0 for value in losses.values())
    assert davpt.prompts.tokens.grad.abs().sum() > 0


def test_eva02_trains_every_method_and_refuses_own_ca_weights():
    """VPT, CVPT and DA-VPT's losses train on EVA-02 (RoPE, q / k norms);
    CVPT's own CA weights (an nn.MultiheadAttention) could not apply them:
    a clear error."""
    for type_, extra in (('VPTViT', {}), ('CVPTViT', {}), ('VPTViT', dict(
            addons=dict(guidance=dict(type='ProxyGuidance',
                                      num_guided=2))))):
        model = backbone(type_, EVA02, vit_extra=EVA_EXTRAS, **extra).train()
        loss = sum(out.mean() for out in model(other_size(EVA02)))
        if 'addons' in extra:
            model.guidance.initialise(2)
            model.guidance.recluster()
            model(other_size(EVA02))
            losses = model.guidance.losses(torch.tensor([0, 1]))
            assert all(value > 0 for value in losses.values())
            loss = loss + sum(losses.values())
        loss.backward()
        assert model.prompts.tokens.grad.abs().sum() > 0
    for ca_weights in ('copy', 'random'):
        with pytest.raises(NotImplementedError, match="use ca_weights='sh"):
            backbone('CVPTViT', EVA02, ca_weights=ca_weights)


def test_siglip_trains_vpt_and_cvpt_and_refuses_davpt():
    for type_ in ('VPTViT', 'CVPTViT'):
        model = backbone(type_, SIGLIP).train()
        sum(out.mean() for out in model(other_size(SIGLIP))).backward()
        assert model.prompts.tokens.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='needs the class token'):
        backbone('VPTViT', SIGLIP, addons=dict(
            guidance=dict(type='ProxyGuidance', num_guided=2)))


# ---- checkpoints ----------------------------------------------------------
def reference_weights(model):
    """The small timm model's weights in timm's layout."""
    name, size, _ = model
    torch.manual_seed(3)
    return timm.create_model(name, pretrained=False, num_classes=0,
                             global_pool='', img_size=size,
                             **SMALL).state_dict()


def dinov2_release_layout(state):
    """timm's DINOv2-with-registers weights as the original release writes
    them: register_tokens, a mask_token, a class slot in pos_embed (zero:
    timm adds it to the class token)."""
    state = dict(state)
    state['register_tokens'] = state.pop('reg_token')
    pos_embed = state.pop('pos_embed')
    state['pos_embed'] = torch.cat(
        (torch.zeros_like(pos_embed[:, :1]), pos_embed), 1)
    state['mask_token'] = torch.zeros(1, pos_embed.shape[-1])
    return state


def eva02_mim_release_layout(state):
    """EVA-02's MIM pretraining file: under 'module', with its mask token
    and the MIM head beside the ViT (timm's filter moves the final norm to
    fc_norm)."""
    return dict(module=dict(state, mask_token=torch.zeros(1, 1, 48),
                            **{'lm_head.weight': torch.zeros(32, 48),
                               'lm_head.bias': torch.zeros(32)}))


def dinov3_release_layout(state):
    """timm's DINOv3 (_qkvb) weights as Meta's release writes them:
    storage_tokens, ls1 / ls2.gamma, one qkv.bias (its key part zero) with
    its bias_mask, the rotary embedding's periods and a mask_token."""
    release = {'mask_token': torch.zeros(1, 48),
               'rope_embed.periods': torch.ones(6)}
    for key, value in state.items():
        if key.endswith(('attn.k_bias', 'attn.v_bias')):
            continue
        if key.endswith('attn.q_bias'):
            attn = key[:-len('q_bias')]
            release[attn + 'qkv.bias'] = torch.cat(
                (value, torch.zeros_like(value), state[attn + 'v_bias']))
            release[attn + 'qkv.bias_mask'] = torch.ones(3 * len(value))
            continue
        release[key.replace('gamma_1', 'ls1.gamma').replace(
            'gamma_2', 'ls2.gamma').replace('reg_token', 'storage_tokens')] \
            = value
    return release


RELEASE_LAYOUTS = {'release': dinov2_release_layout,
                   'eva02_release': eva02_mim_release_layout,
                   'dinov3_release': dinov3_release_layout}


@pytest.mark.parametrize('layout', ['timm', 'release', 'safetensors',
                                    'eva02', 'eva02_release',
                                    'dinov3_release'])
def test_checkpoints_load_exactly(tmp_path, layout):
    """timm's layout (.pth), DINOv2's, EVA-02's and DINOv3's release
    layouts (.pth) and .safetensors (of DINOv2 and of EVA-02) load every
    ViT tensor exactly, through init_weights."""
    spec = (EVA02 if layout.startswith('eva02') else DINOV3_QKVB
            if layout.startswith('dinov3') else DINOV2_REG)
    name, size, _ = spec
    state = reference_weights(spec)
    path = tmp_path / ('vit.safetensors' if layout in (
        'safetensors', 'eva02') else 'vit.pth')
    if path.suffix == '.safetensors':
        save_file(state, str(path))
    else:
        torch.save(RELEASE_LAYOUTS.get(layout, dict)(state), path)
    model = MODELS.build(dict(type='CVPTViT', _scope_='mmseg', num_prompts=M,
                              vit=timm_vit(name, size, checkpoint=str(path))))
    model.init_weights()
    loaded = model.vit.model.state_dict()
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert model.frozen_base['checkpoint'] == str(path)


def test_checkpoint_of_another_architecture_names_a_key(tmp_path):
    path = tmp_path / 'clip.pth'
    torch.save(reference_weights(MODELS_UNDER_TEST[2]), path)  # patch 16
    name, size, _ = DINOV2_REG
    model = MODELS.build(dict(type='VPTViT', _scope_='mmseg', num_prompts=M,
                              vit=timm_vit(name, size, checkpoint=str(path))))
    with pytest.raises(KeyError, match=r"lacks ViT weights: \['model\."):
        model.init_weights()


def test_weights_are_never_downloaded():
    name, size, _ = DINOV2_REG
    with pytest.raises(ValueError, match='never loads weights through timm'):
        MODELS.build(dict(type='VPTViT', _scope_='mmseg', num_prompts=M,
                          vit=timm_vit(name, size, pretrained=True)))


def test_tuned_only_checkpoint_on_a_timm_base_loads_in_init_model(tmp_path):
    """The demo setting's segmentor on a timm base: its tuned-only state
    dict goes through mmseg's init_model to the exact model (the frozen ViT
    restored from the recorded base)."""
    from mmseg.apis import init_model

    from mmseg_cvpt.models import tuned_state_dict
    name, size, _ = DINOV2_REG
    base = tmp_path / 'dinov2.pth'
    torch.manual_seed(3)
    torch.save(timm.create_model(name, pretrained=False, num_classes=0,
                                 img_size=size, embed_dim=64, depth=4,
                                 num_heads=4).state_dict(), base)
    cfg = load_config(f'{REPO}/configs/_base_/upernet_vittiny_ade20k_demo.py')
    cfg.model.backbone = dict(
        type='CVPTViT', num_prompts=M, vit=dict(
            type='TimmViT', model_name=name, img_size=size, embed_dim=64,
            depth=4, num_heads=4, dynamic_img_size=True, dynamic_img_pad=True,
            out_indices=(0, 1, 2, 3), checkpoint=str(base)))
    model = build_model(cfg)
    model.init_weights()
    tuned = tuned_state_dict(model)
    assert not any(k.startswith('backbone.model.') for k in tuned)
    torch.save(dict(state_dict=tuned, meta=dict(dataset_meta=None)),
               tmp_path / 'tuned.pth')
    loaded = init_model(cfg, str(tmp_path / 'tuned.pth'), device='cpu')
    expected = model.state_dict()
    assert set(loaded.state_dict()) == set(expected)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key
    with torch.no_grad():
        images = torch.randn(1, 3, 64, 64)
        assert torch.equal(loaded.eval().backbone(images)[3],
                           model.eval().backbone(images)[3])


def test_classification_backbone_is_timms_normed_class_token():
    """ClsTokenViT on the timm family: the last block's class token after
    timm's final norm (its forward_features)."""
    from mmseg_cvpt.models import ClsTokenViT
    name, size, _ = DINOV2_REG
    torch.manual_seed(0)
    classifier = ClsTokenViT(vit=dict(type='VPTViT', num_prompts=0,
                                      vit=dict(timm_vit(name, size),
                                               out_indices=-1))).eval()
    images = other_size(DINOV2_REG)
    with torch.no_grad():
        cls_token, = classifier(images)
        expected = classifier.vit.vit.model.forward_features(images)[:, 0]
    assert torch.equal(cls_token, expected)


def test_a_missing_timm_checkpoint_stops_training_before_it_starts(tmp_path):
    from mmengine.config import Config

    from mmseg_cvpt.engine import check_train_inputs
    name, size, _ = DINOV2_REG
    cfg = Config(dict(model=dict(backbone=dict(
        type='VPTViT', vit=timm_vit(name, size,
                                    checkpoint=str(tmp_path / 'no.pth'))))))
    with pytest.raises(FileNotFoundError,
                       match='model.backbone.vit.checkpoint=PATH'):
        check_train_inputs(cfg)


# ---- the timm family's demo ----------------------------------------------
TIMM_DEMO = {
    method: osp.join(REPO, 'configs', method,
                     'upernet_vittiny_dinov2_ade20k_demo.py')
    for method in ('cvpt', 'vpt', 'baseline', 'bpt', 'davpt')
}
SHIPPED_DINOV2 = osp.join(REPO, 'pretrain', 'vit_tiny_dinov2_demo_timm.pth')


def test_demo_configs_load_the_shipped_dinov2_style_vit():
    """Every demo config of the timm family builds and loads the shipped
    checkpoint exactly (registers and layer scales included)."""
    weights = torch.load(SHIPPED_DINOV2, weights_only=True)
    assert weights['reg_token'].shape == (1, 4, 64)
    assert 'blocks.3.ls1.gamma' in weights
    for config in TIMM_DEMO.values():
        cfg = load_config(config)
        model = build_model(cfg)
        model.init_weights()
        own = model.backbone.vit.model.state_dict()
        assert set(own) == set(weights) - {'head.weight', 'head.bias'}
        for key, value in own.items():
            assert torch.equal(value, weights[key]), (config, key)


@pytest.fixture
def dynamo_reset():
    """Forget dynamo's compiled code after the test: a compiled run in this
    process leaves it (and its recompilation counts) on the code objects
    of our modules for the next test; and dynamo's settings as they were
    (tools/train.py sets one for compiled runs)."""
    settings = torch._dynamo.config.get_config_copy()
    yield
    torch._dynamo.reset()
    torch._dynamo.config.load_config(settings)


def test_timm_demo_trains_and_tests_with_aug_test(tmp_path, demo_root,
                                                  dynamo_reset):
    """tools/train.py on the timm demo (CVPT) with ``--amp --compile``: bf16
    autocast (AutocastOptimWrapper on a CPU), mmengine's compiled train
    step (the config's ``compile`` dict gives the backend: dynamo's graphs
    run eagerly, without inductor's C++ build, for speed; the compiled
    graphs' numbers are checked in test_precision_and_compile.py); then
    tools/test.py --aug-test on its tuned-only checkpoint. Both in this
    process: dynamo's code of earlier tests is forgotten before the
    training (it compiles afresh, as in a new process), this one's after
    (dynamo_reset). mmseg's accuracy (a boolean mask) is traced in the
    train step's graph, not a graph break that makes dynamo give up the
    step and retrace it frame by frame."""
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    work_dir = tmp_path / 'train'
    out = run_in_process('train.py', [
        TIMM_DEMO['cvpt'], '--work-dir', work_dir, '--amp', '--compile',
        '--cfg-options', *data_options(demo_root, 1),
        'compile.backend=eager'])
    if not torch.cuda.is_available():
        assert "type='AutocastOptimWrapper'" in out
    assert 'Model has been "compiled"' in out
    breaks = '\n'.join(counters['graph_break'])
    assert 'Tensor.backward()' in breaks  # the compiled step did run
    assert 'aten.nonzero' not in breaks
    checkpoint = work_dir / 'iter_1.pth'
    saved = torch.load(checkpoint, weights_only=False)['state_dict']
    assert not any(k.startswith('backbone.model.') or '_orig_mod' in k
                   for k in saved)
    out = run_in_process('test.py', [
        TIMM_DEMO['cvpt'], checkpoint, '--aug-test', '--work-dir',
        tmp_path / 'test', '--cfg-options', *data_options(demo_root)])
    check_test_output(out, str(tmp_path / 'test'))
    assert 'views of' in out


def test_dinov2_style_pretraining_is_bit_exact(tmp_path):
    """--style dinov2 writes a timm checkpoint of the demo's DINOv2-style
    ViT, the same bytes every run (two runs in this process: the tool seeds
    torch and its data generators and sets one thread and deterministic
    algorithms itself)."""
    paths = [tmp_path / f'run{i}.pth' for i in (1, 2)]
    for path in paths:
        pretrain_tiny_vit(path, '--style', 'dinov2', '--steps', '3',
                          '--batch', '8')
    first, second = (open(path, 'rb').read() for path in paths)
    assert first == second
    weights = torch.load(paths[0], weights_only=True)
    assert weights['reg_token'].shape == (1, 4, 64)
    assert weights['pos_embed'].shape == (1, 64, 64)  # no class slot


def openai_clip_layout(state):
    """timm's CLIP weights as OpenAI's CLIP writes its visual tower."""
    renames = [('patch_embed.proj', 'conv1'), ('norm_pre', 'ln_pre'),
               ('blocks.', 'transformer.resblocks.'), ('.norm1', '.ln_1'),
               ('.norm2', '.ln_2'), ('attn.qkv.', 'attn.in_proj_'),
               ('attn.proj', 'attn.out_proj'), ('mlp.fc1', 'mlp.c_fc'),
               ('mlp.fc2', 'mlp.c_proj')]
    out = {}
    for key, value in state.items():
        if key == 'cls_token':
            key, value = 'class_embedding', value.flatten()
        elif key == 'pos_embed':
            key, value = 'positional_embedding', value[0]
        elif key.startswith('norm.'):
            key = 'ln_post.' + key[len('norm.'):]
        for old, new in renames:
            key = key.replace(old, new)
        out['visual.' + key] = value
    out['visual.proj'] = torch.randn(48, 32)  # the text projection: a head
    return out


def test_openai_clip_checkpoint_loads_exactly(tmp_path):
    name, size, _ = MODELS_UNDER_TEST[2]
    state = reference_weights(MODELS_UNDER_TEST[2])
    torch.save(openai_clip_layout(state), tmp_path / 'clip.pth')
    model = MODELS.build(dict(type='VPTViT', _scope_='mmseg', num_prompts=M,
                              vit=timm_vit(name, size, checkpoint=str(
                                  tmp_path / 'clip.pth'))))
    model.init_weights()
    loaded = model.vit.model.state_dict()
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def test_export_of_a_full_checkpoint_records_the_timm_checkpoint(tmp_path):
    """A full checkpoint on the timm demo that records no base exports,
    with its config file, as a task package whose base is the family's
    checkpoint (the backbone's pretrained source); the config stored in the
    checkpoint names no weights file, so without one the tool asks for
    --base-checkpoint."""
    from mmseg_cvpt.apis import export_task, model_meta
    from mmseg_cvpt.apis.task_package import save_file
    cfg = load_config(TIMM_DEMO['cvpt'])
    model = build_model(cfg)
    model.init_weights()
    model.backbone.frozen_base = None  # e.g. weights of an unrecorded source
    full = str(tmp_path / 'full.pth')
    save_file(dict(meta=model_meta(cfg, model),
                   state_dict=model.state_dict()), full)
    with pytest.raises(ValueError, match='pass --base-checkpoint PATH'):
        export_task(full, str(tmp_path / 'task.pth'))  # its config: data,
        # which names no weights file (dropped: it opens nothing)
    package = export_task(full, str(tmp_path / 'task.pth'),
                          config=TIMM_DEMO['cvpt'])
    assert package['meta']['task_package']['base_checkpoint'] == \
        SHIPPED_DINOV2
