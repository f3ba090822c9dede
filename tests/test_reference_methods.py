"""The parameter-efficient methods CVPT is measured against: LoRA,
AdaptFormer, Rein and bias tuning, on tiny ViTs of both families; their
equations written here from the frozen blocks' modules."""
import math
import os.path as osp
import re
import sys

import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

import mmseg_cvpt  # noqa: F401  (registers the backbones)
from mmseg_cvpt.engine import load_config
from mmseg_cvpt.methods import METHODS
from tiny_runs import (REPO, check_test_output, data_options, parse_counts,
                       printed_miou, run, run_in_process, validation_metric)
from tool_loading import count_params_output

DIMS, HEADS, LAYERS = 32, 4, 3
MMSEG = dict(img_size=32, patch_size=8, embed_dims=DIMS, num_layers=LAYERS,
             num_heads=HEADS, mlp_ratio=2, out_indices=(0, 2))
TIMM = dict(vit=dict(type='TimmViT', model_name='vit_base_patch14_reg4_dinov2',
                     img_size=28, embed_dim=DIMS, depth=LAYERS,
                     num_heads=HEADS, out_indices=(0, 2),
                     dynamic_img_size=True))
FAMILIES = {'mmseg': (MMSEG, 32), 'timm': (TIMM, 28)}


def build(type_, family='mmseg', **kwargs):
    """The method on a tiny ViT whose biases and layer scales are not the
    special values of an initialisation."""
    arch, _ = FAMILIES[family]
    torch.manual_seed(0)
    model = MODELS.build(dict(type=type_, _scope_='mmseg', **arch, **kwargs))
    model.init_weights()
    with torch.no_grad():
        for name, tensor in model.vit.named_parameters():
            if name.endswith('bias'):
                tensor.normal_(std=0.3)
            elif name.endswith('gamma'):
                tensor.copy_(1 + 0.1 * torch.randn_like(tensor))
    return model.eval()


def images(family, batch=2):
    size = FAMILIES[family][1]
    return torch.randn(batch, 3, size, size,
                       generator=torch.Generator().manual_seed(1))


def max_diff(outputs, expected):
    return max((a - b).abs().max().item() for a, b in zip(outputs, expected))


def frozen_outputs(model, x):
    """The frozen ViT alone (VPTViT without prompts) with the model's ViT
    weights."""
    frozen = MODELS.build(dict(type='VPTViT', _scope_='mmseg',
                               **FAMILIES[model_family(model)][0]))
    frozen.vit.load_state_dict(model.vit.state_dict())
    with torch.no_grad():
        return frozen.eval()(x)


def model_family(model):
    return 'timm' if type(model.vit).__name__ == 'TimmViT' else 'mmseg'


def train_steps(model, x, steps=3):
    """A few SGD steps of the tuned parameters on a made-up loss."""
    model.train()
    optimiser = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(steps):
        optimiser.zero_grad()
        sum((out**2).mean() for out in model(x)).backward()
        optimiser.step()
    return model.eval()


def with_features(model, x):
    """The blocks, each as the family runs it, and the tokens entering
    block 0: (blocks, tokens)."""
    tokens = model.vit.embed(x)
    return [block.at(tokens) for block in model.vit.blocks], tokens


def patch_maps(model, tokens, xs):
    """The patch maps of blocks 0 and 2 from their outputs."""
    return [tokens.replace_x(xs[i]).feature_map() for i in (0, 2)]


# ---- LoRA ---------------------------------------------------------------
@pytest.mark.parametrize('family', FAMILIES)
def test_lora_starts_as_the_frozen_vit_and_merges_exactly(family):
    """B = 0: the frozen ViT at the start; after training steps the merged
    model (B A added into the weights, no LoRA tensors) gives the same
    outputs as the unmerged one."""
    model = build('LoRAViT', family)
    x = images(family)
    with torch.no_grad():
        assert max_diff(model(x), frozen_outputs(model, x)) == 0
    train_steps(model, x)
    merged = model.merged_vit()
    assert not any('updates' in k for k in merged.state_dict())
    plain = MODELS.build(dict(type='VPTViT', _scope_='mmseg',
                              **FAMILIES[family][0]))
    plain.vit.load_state_dict(merged.state_dict())
    with torch.no_grad():
        unmerged, merged_out = model(x), plain.eval()(x)
    assert max_diff(unmerged, merged_out) < 1e-5
    assert max_diff(unmerged, frozen_outputs(model, x)) > 1e-3


def packed_weights(vit, index):
    attention = vit.blocks[index].attention
    return attention.in_proj_weight.detach(), \
        attention.out_proj.weight.detach()


@pytest.mark.parametrize('family', FAMILIES)
def test_lora_update_is_low_rank_on_its_targets_only(family):
    """The merged update is of rank <= r on W_q and W_v, zero on W_k, W_o
    and every other weight (MLP, norms, embeddings)."""
    model = train_steps(build('LoRAViT', family, rank=2), images(family))
    merged = model.merged_vit()
    before, after = model.vit.state_dict(), merged.state_dict()
    for index in range(LAYERS):
        (w_in, w_out), (m_in, m_out) = (packed_weights(v, index)
                                        for v in (model.vit, merged))
        delta = (m_in - w_in).double()
        for part, rows in zip('qkv', delta.split(DIMS)):
            if part == 'k':
                assert not rows.any()
                continue
            values = torch.linalg.svdvals(rows)  # rank 2 up to rounding
            assert values[1] > 1e-3 * values[0] and \
                values[2] < 1e-4 * values[0], (part, values[:3])
        assert torch.equal(m_out, w_out)
    attention_keys = ('qkv.weight', 'in_proj_weight')
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(k.endswith(attention_keys) for k in changed)


def test_lora_trains_exactly_its_updates_and_counts_4lrd():
    model = build('LoRAViT', rank=8)
    trainable = {n: p.numel() for n, p in model.named_parameters()
                 if p.requires_grad}
    assert all(n.startswith('updates.') for n in trainable)
    assert sum(trainable.values()) == 4 * LAYERS * 8 * DIMS
    every = build('LoRAViT', rank=4, targets=('q', 'k', 'v', 'o'))
    assert sum(p.numel() for p in every.parameters()
               if p.requires_grad) == 8 * LAYERS * 4 * DIMS
    with pytest.raises(ValueError, match='targets must be'):
        build('LoRAViT', targets=('q', 'q'))
    with pytest.raises(ValueError, match=r"LoRA targets \['fc3'\] are not "
                       'projections of this ViT'):
        build('LoRAViT', targets=('q', 'fc3'))
    with pytest.raises(ValueError, match='has no prompts'):
        build('LoRAViT', num_prompts=4)


def test_lora_on_the_output_projection_merges_exactly():
    model = build('LoRAViT', targets=('k', 'o'))
    x = images('mmseg')
    train_steps(model, x)
    plain = MODELS.build(dict(type='VPTViT', _scope_='mmseg', **MMSEG))
    plain.vit.load_state_dict(model.merged_vit().state_dict())
    with torch.no_grad():
        assert max_diff(model(x), plain.eval()(x)) < 1e-5


# ---- AdaptFormer ----------------------------------------------------------
def test_adaptformer_equals_its_equation_and_starts_as_the_frozen_vit():
    """x' = x + SA(LN1 x); x = x' + MLP(LN2 x') + s up(ReLU(down(x')))."""
    model = build('AdaptFormerViT', bottleneck=8)
    x = images('mmseg')
    with torch.no_grad():
        assert max_diff(model(x), frozen_outputs(model, x)) == 0
    adapters = model.adapters
    for adapter in adapters:  # the reference init: up and biases zero
        assert adapter.up.weight.abs().sum() == 0
        assert adapter.down.bias.abs().sum() == adapter.up.bias.abs().sum() \
            == 0
        bound = 1 / math.sqrt(DIMS)  # kaiming-uniform(a = sqrt 5)
        assert 0.5 * bound < adapter.down.weight.abs().max() <= bound
    train_steps(model, x)
    blocks, tokens = with_features(model, x)
    h, outs = tokens.x, []
    with torch.no_grad():
        for block, adapter in zip(blocks, adapters):
            layer = block.module
            h = h + layer.attn(layer.ln1(h), identity=0)  # mmseg's SA
            adapted = 0.1 * adapter.up(F.relu(adapter.down(h)))
            h = layer.ffn(layer.ln2(h), identity=h) + adapted
            outs.append(h)
        expected = patch_maps(model, tokens, outs)
        assert max_diff(model(x), expected) < 1e-5


# ---- Rein -------------------------------------------------------------------
def rein_equation(model, index, f):
    """Rein's equation (ReinViT's docstring) on patch features f, from the
    model's tensors."""
    tokens = model.token_factors[index] @ model.token_basis[index]
    s = F.softmax(f @ tokens.T / math.sqrt(DIMS), dim=-1)
    dbar = s[:, :, 1:] @ (tokens[1:] @ model.token_to_feature.weight.T +
                          model.token_to_feature.bias)
    delta = (dbar + f) @ model.feature_delta.weight.T + \
        model.feature_delta.bias
    return f + model.delta_scale * delta


@pytest.mark.parametrize('family', FAMILIES)
def test_rein_equals_its_equation_on_the_patch_tokens(family):
    """Rein after every block on the patches only (class token and
    registers as the block left them)."""
    model = train_steps(build('ReinViT', family, num_tokens=6, rank=4),
                        images(family))
    x = images(family)
    blocks, tokens = with_features(model, x)
    prefix = model.vit.num_prefix_tokens
    h, outs = tokens.x, []
    with torch.no_grad():
        for index, block in enumerate(blocks):
            h = block(h)
            h = torch.cat((h[:, :prefix],
                           rein_equation(model, index, h[:, prefix:])), 1)
            outs.append(h)
        assert max_diff(model(x), patch_maps(model, tokens, outs)) < 1e-5


def test_rein_starts_as_its_reference_code_and_counts_its_parameters():
    model = build('ReinViT', num_tokens=10, rank=4)
    assert model.delta_scale.item() == pytest.approx(1e-3)
    bound = math.sqrt(6 / (3 * 8**2 + math.sqrt(DIMS * 4)))  # patch 8
    for tensor in (model.token_factors, model.token_basis):
        assert 0.8 * bound < tensor.abs().max() <= bound
    for linear in (model.token_to_feature, model.feature_delta):
        assert linear.weight.abs().max() <= 1 / math.sqrt(DIMS)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == LAYERS * (10 * 4 + 4 * DIMS) + 2 * (DIMS**2 +
                                                            DIMS) + 1


def test_rein_query_embeddings_are_its_pooled_and_merged_tokens():
    """link_token_to_query: the layers' tokens through W_q, pooled over the
    layers as Rein's return_auto pools them (max_pool1d, avg_pool1d, the
    last layer's, concatenated and flattened per channel), merged by W_m;
    they do not depend on the image and get gradients."""
    model = build('ReinViT', num_tokens=6, rank=4, link_token_to_query=True,
                  query_dims=8)
    tokens = model.token_factors @ model.token_basis  # (L, m, D)
    t = model.query_transform(tokens).permute(1, 2, 0)  # (m, q, L)
    pooled = torch.cat((F.max_pool1d(t, kernel_size=LAYERS),
                        F.avg_pool1d(t, kernel_size=LAYERS),
                        t[:, :, -1:]), dim=-1)  # (m, q, 3)
    expected = model.query_merge(pooled.flatten(-2, -1))
    queries = model.query_embeddings()
    assert queries.shape == (6, 8)
    assert torch.allclose(queries, expected, atol=1e-6)
    queries.sum().backward()
    assert model.token_basis.grad.abs().sum() > 0
    assert model.structure()['rein_queries'] is True
    unlinked = build('ReinViT', num_tokens=6, rank=4)
    assert 'rein_queries' not in unlinked.structure()  # as recorded before
    with pytest.raises(RuntimeError, match='link_token_to_query=True'):
        unlinked.query_embeddings()


def test_adaptformer_counts_its_parameters():
    model = build('AdaptFormerViT', bottleneck=8)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == LAYERS * (2 * DIMS * 8 + 8 + DIMS)


# ---- bias tuning --------------------------------------------------------
@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('num_prompts', [0, 4])  # Bias, VPT+Bias
def test_bias_tuning_trains_exactly_the_biases(family, num_prompts):
    """also_train=['bias']: every ViT tensor named *bias trains (q, k, v,
    out, MLP, norms, patch projection), nothing else of the ViT; the ViT
    stays in eval mode (no dropout or drop-path) while training."""
    model = build('VPTViT', family, num_prompts=num_prompts,
                  also_train=['bias']).train()
    trained = {n for n, p in model.vit.named_parameters() if p.requires_grad}
    biases = {n for n, _ in model.vit.named_parameters() if 'bias' in n}
    assert trained == biases and len(biases) >= 6 * LAYERS
    assert not any(m.training for m in model.vit.modules())
    extra = {n for n, p in model.named_parameters() if p.requires_grad
             and not n.startswith('vit.')}
    assert extra == ({'prompts.tokens'} if num_prompts else set())


# ---- the demos, through the tools ------------------------------------------
DEMO_CONFIGS = {  # (folder, name prefix) of each method's demo config
    name: (METHODS[name].folder, METHODS[name].prefix)
    for name in ('bias', 'vpt_bias', 'lora', 'adaptformer', 'rein', 'full')
}
DEMOS = {'mmseg': 'upernet_vittiny_ade20k_demo.py',
         'timm': 'upernet_vittiny_dinov2_ade20k_demo.py'}


def demo_config(method, family):
    folder, prefix = DEMO_CONFIGS[method]
    return osp.join(REPO, 'configs', folder, prefix + DEMOS[family])


@pytest.mark.parametrize('method', DEMO_CONFIGS)
def test_method_trains_and_tests_with_aug_test_on_the_timm_demo(
        tmp_path, demo_root, method):
    """tools/train.py on the method's timm-family demo config, then
    tools/test.py --aug-test on its checkpoint; the checkpoint holds what
    the method tuned and, but for full fine-tuning, no frozen ViT weight.
    (On mmseg's family every method goes through the same tools in
    test_pretrained_demo.py's run of compare_methods.py.)"""
    config = demo_config(method, 'timm')
    work_dir = tmp_path / 'train'
    out = run_in_process('train.py', [config, '--work-dir', work_dir,
                                      '--cfg-options',
                                      *data_options(demo_root, 2)])
    assert printed_miou(out) == pytest.approx(validation_metric(work_dir),
                                              abs=0.01)
    saved = torch.load(work_dir / 'iter_2.pth',
                       weights_only=False)['state_dict']
    backbone = {k for k in saved if k.startswith('backbone.')}
    if method == 'full':
        assert any('blocks.' in k or 'layers.' in k for k in backbone)
    else:
        tuned = {'bias': 'bias', 'vpt_bias': 'bias', 'lora': 'updates.',
                 'adaptformer': 'adapters.', 'rein': 'token_'}[method]
        assert any(tuned in k for k in backbone)
        assert all(tuned in k or 'prompts.' in k or k.endswith('_extra_state')
                   or k.startswith('backbone.token_to_feature')
                   or k.startswith('backbone.feature_delta')
                   or k == 'backbone.delta_scale' for k in backbone), backbone
    out = run_in_process('test.py', [
        config, work_dir / 'iter_2.pth', '--aug-test', '--work-dir',
        tmp_path / 'test', '--cfg-options', *data_options(demo_root)])
    check_test_output(out, str(tmp_path / 'test'))
    assert 'views of' in out


@pytest.mark.tool
def test_merged_lora_checkpoint_runs_in_stock_mmseg(tmp_path, demo_root):
    """tools/export_task.py --merge: a full checkpoint without LoRA tensors
    and a config without custom_imports, which mmseg's own tools/test.py
    evaluates (mmseg_cvpt never imported) to the mIoU of the unmerged
    model under our tools/test.py (in this process: mmseg's runs in its
    own). LoRA on the MLP's fc1 and fc2 too: their updates merge into
    stock mmseg's FFN weights."""
    import mmseg
    config = osp.join(REPO, 'configs', 'lora', DEMOS['mmseg'])
    work_dir = tmp_path / 'train'
    targets = 'model.backbone.targets=[q,v,fc1,fc2]'
    run_in_process('train.py', [config, '--work-dir', work_dir,
                                '--cfg-options', targets,
                                *data_options(demo_root, 2)])
    tuned = str(work_dir / 'iter_2.pth')
    merged = str(tmp_path / 'merged.pth')
    run_in_process('export_task.py', [tuned, '--merge', '--out', merged])
    saved = torch.load(merged, weights_only=True)
    assert not any('updates' in k for k in saved['state_dict'])
    lora = torch.load(tuned, weights_only=False)['state_dict']
    assert 'backbone.updates.0.up.fc2' in lora
    assert 'backbone.layers.0.attn.attn.in_proj_weight' in saved['state_dict']
    stock_config = tmp_path / 'merged.py'
    assert 'mmseg_cvpt' not in stock_config.read_text()
    test_options = [o for o in data_options(demo_root)
                    if not o.startswith('train_dataloader')]
    ours = run_in_process('test.py', [config, tuned, '--work-dir',
                                      tmp_path / 'ours', '--cfg-options',
                                      targets, *test_options])
    stock_test = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools',
                          'test.py')
    stock = run([sys.executable, stock_test, str(stock_config), merged,
                 '--work-dir', str(tmp_path / 'stock'), '--cfg-options'] +
                test_options)
    assert 'mmseg_cvpt' not in stock
    miou = [re.search(r'mIoU: ([\d.]+)', out).group(1)
            for out in (ours, stock)]
    assert miou[0] == miou[1]


def test_count_params_of_the_dinov2_cvpt_config(capsys):
    """The DINOv2-B/14 CVPT config: 12 x 200 x 768 prompts."""
    out = count_params_output(osp.join(
        REPO, 'configs', 'cvpt', 'upernet_dinov2_vitb14_ade20k.py'), capsys)
    assert parse_counts(out)['backbone'] == 1_843_200


def test_vit_b_configs_train_their_formulas():
    """The ADE20K ViT-B/16 configs of the reference methods: trainable
    backbone parameters by their formulas (L = 12, D = 768)."""
    layers, dims = 12, 768
    expected = dict(lora=4 * layers * 8 * dims,
                    adaptformer=layers * (2 * dims * 64 + 64 + dims),
                    rein=layers * (100 * 16 + 16 * dims) + 2 * (dims**2 +
                                                                dims) + 1)
    for method, count in expected.items():
        cfg = load_config(osp.join(REPO, 'configs', method,
                                   'upernet_vitb_ade20k.py'))
        backbone = MODELS.build(cfg.model.backbone)
        assert sum(p.numel() for p in backbone.parameters()
                   if p.requires_grad) == count, method
    cfg = load_config(osp.join(REPO, 'configs', 'bias',
                               'upernet_vitb_ade20k.py'))
    backbone = MODELS.build(cfg.model.backbone)
    trained = [n for n, p in backbone.named_parameters() if p.requires_grad]
    assert trained and all('bias' in n for n in trained)
    assert len(trained) == sum('bias' in n for n, _ in
                               backbone.named_parameters())
