"""tools/analysis/benchmark.py's untimed counts, on a tiny ViT, and the
bounds of docs/performance.md that FLOPs and peak memory decide."""
import sys

import pytest
import torch

from tool_loading import load_tool

DIMS, HEADS, LAYERS, PATCH = 32, 4, 2, 8
ARCH = dict(patch_size=PATCH, embed_dims=DIMS, num_layers=LAYERS,
            num_heads=HEADS, mlp_ratio=2, out_indices=(0, 1), final_norm=True)
SIZE, BATCH = 32, 2
PROMPTS = 4  # folded in eval: H m D < D^2 + m D for m < 10.7


@pytest.fixture(scope='module')
def benchmark_tool():
    return load_tool('analysis/benchmark.py')


def measured_costs(benchmark_tool, prompts):
    """untimed_costs of every configuration, by (method, P)."""
    cases = benchmark_tool.build_cases(SIZE, prompts, torch.device('cpu'),
                                       ARCH)
    images = torch.randn(BATCH, 3, SIZE, SIZE)
    return {(case.config.method, case.config.prompts):
            benchmark_tool.untimed_costs(case, images) for case in cases}


@pytest.fixture(scope='module')
def costs(benchmark_tool):
    """untimed_costs at P = PROMPTS, by method."""
    return {method: cost for (method, _), cost in
            measured_costs(benchmark_tool, [PROMPTS]).items()}


def test_cvpt_inference_flops_are_the_folded_cross_attention(costs):
    """With the prompt cache in place, CVPT's inference adds exactly the
    folded cross-attention's two matrix products per layer: logits x M
    (tokens x D x H m) and A U (tokens x H m x D), 2 FLOPs a multiply-add.
    The one-off fold (4 m D^2 a layer) is not an inference cost."""
    tokens = BATCH * ((SIZE // PATCH)**2 + 1)
    per_layer = 2 * (2 * tokens * DIMS * HEADS * PROMPTS)
    extra = costs['cvpt']['infer_gflops'] - costs['frozen']['infer_gflops']
    assert extra * 1e9 == pytest.approx(LAYERS * per_layer, rel=1e-9)


def test_trainable_parameters_are_the_prompts(benchmark_tool, costs):
    """L m D prompts; BPT's A (L, m, p) and B (L, D, p), p = min(50, D);
    the methods without prompts their own formulas (r = 8, b = 64, Rein's
    m = 100 tokens of rank 16)."""
    assert costs['frozen']['trainable'] == 0
    expected = dict(
        bpt=LAYERS * (PROMPTS + DIMS) * min(50, DIMS),
        lora=4 * LAYERS * 8 * DIMS,
        adaptformer=LAYERS * (2 * DIMS * 64 + 64 + DIMS),
        rein=LAYERS * (100 * 16 + 16 * DIMS) + 2 * (DIMS**2 + DIMS) + 1)
    for method in benchmark_tool.PROMPT_METHODS:
        assert costs[method]['trainable'] == expected.get(
            method, LAYERS * PROMPTS * DIMS), method


def test_vpt_inference_flops_grow_with_the_sequence(costs):
    """VPT-deep's reference form runs the same blocks on m more tokens per
    image."""
    reference, frozen = costs['vpt_reference'], costs['frozen']
    assert reference['infer_gflops'] > frozen['infer_gflops']
    assert reference['infer_peak_mib'] > frozen['infer_peak_mib']


def test_fast_vpt_costs_less_than_its_reference_form(costs):
    fast, reference = costs['vpt'], costs['vpt_reference']
    for key in ('train_gflops', 'infer_gflops', 'train_peak_mib'):
        assert fast[key] < reference[key]


def test_guidance_and_bilinear_prompts_cost_their_extra_products(costs):
    """DA-VPT's guidance adds training work only; BPT's prompt product
    A B^T runs in training and inference."""
    vpt, davpt, bpt = costs['vpt'], costs['davpt'], costs['bpt']
    assert davpt['train_gflops'] > vpt['train_gflops']
    assert davpt['infer_gflops'] == vpt['infer_gflops']
    assert bpt['train_gflops'] > vpt['train_gflops']
    assert bpt['infer_gflops'] > vpt['infer_gflops']


def test_counted_flops_are_the_formulas(benchmark_tool):
    """Every method's train step and inference FLOPs are its multiply-add
    formula's (docs/performance.md), exactly. CVPT: folded (P=4),
    unfolded in training and folded in inference (P=8), unfolded (P=40)."""
    for (method, prompts), cost in measured_costs(benchmark_tool,
                                                  [4, 8, 40]).items():
        config = benchmark_tool.Config(SIZE, method, prompts)
        formula = benchmark_tool.formula_gflops(config, ARCH, BATCH)
        for key in ('train_gflops', 'infer_gflops'):
            assert cost[key] == pytest.approx(formula[f'{key}_formula'],
                                              rel=1e-9), (method, prompts)


def test_counted_flops_are_the_formulas_on_a_timm_dinov2(benchmark_tool):
    """The same on timm's DINOv2 with registers (five prefix tokens, layer
    scales), the family of ``--arch dinov2_b14``."""
    arch = dict(vit=dict(type='TimmViT',
                         model_name='vit_base_patch14_reg4_dinov2',
                         embed_dim=DIMS, depth=LAYERS, num_heads=HEADS,
                         out_indices=(0, 1), final_norm=True))
    size = 28  # 2 x 2 patches of 14
    images = torch.randn(BATCH, 3, size, size)
    for case in benchmark_tool.build_cases(size, [4, 40],
                                           torch.device('cpu'), arch):
        cost = benchmark_tool.untimed_costs(case, images)
        formula = benchmark_tool.formula_gflops(case.config, arch, BATCH)
        for key in ('train_gflops', 'infer_gflops'):
            assert cost[key] == pytest.approx(
                formula[f'{key}_formula'], rel=1e-9), case.config


def test_cases_share_one_frozen_vit(benchmark_tool):
    """Every configuration's training and inference backbones hold the very
    same frozen tensors (the backbone's ``share_frozen_from``), not copies
    pointing at one storage."""
    for case in benchmark_tool.build_cases(SIZE, [PROMPTS],
                                           torch.device('cpu'), ARCH):
        train, infer = (dict(model.vit.named_parameters()) for model in
                        (case.train_model, case.infer_model))
        for name in case.train_model.frozen_keys():
            assert train[name] is infer[name], name


# The bounds the README's run holds the times to (docs/performance.md,
# "Bounds"): (size, P, step, method, against, bound). Times vary with the
# machine; the FLOPs, which the formulas give exactly
# (test_counted_flops_are_the_formulas), must meet each bound.
TIME_BOUNDS = [
    (512, 200, 'train', 'cvpt', 'vpt_reference', 0.95),
    (224, 200, 'train', 'cvpt', 'vpt_reference', 0.65),
    (224, 10, 'train', 'cvpt', 'frozen', 1.10),
    (224, 10, 'infer', 'cvpt', 'frozen', 1.05),
    (512, 200, 'infer', 'cvpt', 'frozen', 1.25),
    (224, 200, 'train', 'vpt', 'vpt_reference', 0.60),
    (224, 200, 'train', 'vpt', 'cvpt', 1.0),
    (512, 200, 'train', 'vpt', 'vpt_reference', 0.95),
]


@pytest.mark.parametrize('size,prompts,step,method,against,bound',
                         TIME_BOUNDS)
def test_vit_b_flops_meet_the_time_bounds(benchmark_tool, size, prompts, step,
                                          method, against, bound):
    def gflops(method, prompts):
        config = benchmark_tool.Config(size, method, prompts)
        return benchmark_tool.formula_gflops(
            config, benchmark_tool.VIT_B16, 2)[f'{step}_gflops_formula']

    reference = gflops(against, 0 if against == 'frozen' else prompts)
    assert gflops(method, prompts) / reference <= bound


def test_fast_forms_train_in_less_memory_than_the_reference_form(
        benchmark_tool):
    """The peak-memory bound of the README's run (fast VPT-deep and CVPT
    below VPT-deep's reference form at P=200 on ViT-B's 197 tokens), on the
    tiny ViT with as many prompts as tokens."""
    tokens = (SIZE // PATCH)**2 + 1
    costs = measured_costs(benchmark_tool, [tokens])
    reference = costs['vpt_reference', tokens]['train_peak_mib']
    for method in ('vpt', 'cvpt'):
        assert costs[method, tokens]['train_peak_mib'] < reference, method


def test_bf16_steps_run_under_autocast_with_the_formulas_flops(
        benchmark_tool):
    """``--dtype bf16``: the train step and inference run the backbone's
    products in bfloat16 (autocast), the operations, and so the FLOPs,
    unchanged."""
    images = torch.randn(BATCH, 3, SIZE, SIZE)
    for case in benchmark_tool.build_cases(SIZE, [PROMPTS],
                                           torch.device('cpu'), ARCH,
                                           methods=['cvpt', 'lora']):
        dtypes = []
        for model in (case.train_model, case.infer_model):  # an MLP's
            linear = next(m for m in model.vit.modules()  # first layer
                          if isinstance(m, torch.nn.Linear))
            linear.register_forward_hook(
                lambda module, inputs, out: dtypes.append(out.dtype))
        cost = benchmark_tool.untimed_costs(case, images, torch.bfloat16)
        assert set(dtypes) == {torch.bfloat16}, case.config
        formula = benchmark_tool.formula_gflops(case.config, ARCH, BATCH)
        for key in ('train_gflops', 'infer_gflops'):
            assert cost[key] == pytest.approx(formula[f'{key}_formula'],
                                              rel=1e-9), case.config


def test_compiled_rows_follow_their_eager_twins(benchmark_tool):
    """``--compile``: every configuration once eager, then once compiled,
    labelled so."""
    configs = benchmark_tool.configs_of(224, [10], ['cvpt', 'lora'],
                                        compiled=True)
    eager = [c for c in configs if not c.compiled]
    assert [c for c in configs if c.compiled] == [
        benchmark_tool.replace(c, compiled=True) for c in eager]
    assert configs[:len(eager)] == eager
    assert configs[-1].label == '224px CVPT compiled P=10'


def test_peers_without_peft_say_how_to_install_it(benchmark_tool, monkeypatch,
                                                  tmp_path):
    """--peers times HF peft's LoRA, an optional requirement: without it
    the tool stops with the install command before building anything."""
    monkeypatch.setitem(sys.modules, 'peft', None)  # import peft fails
    with pytest.raises(SystemExit, match=r"--peers times HF peft's LoRA, "
                       r'which is not installed: pip install -r '
                       r'requirements/peers.txt'):
        benchmark_tool.main(['--peers', '--sizes', '224', '--out',
                             str(tmp_path)])


def test_the_tables_read_the_method_registry(benchmark_tool):
    """The benchmark's rows are the frozen ViT, VPT's reference form and
    every registered method with a cost formula, labelled from the
    registry."""
    from mmseg_cvpt.methods import METHODS
    costed = [name for name, method in METHODS.items() if method.cost]
    assert list(benchmark_tool.METHODS) == ['frozen', 'vpt_reference',
                                            *costed]
    assert costed == ['vpt', 'cvpt', 'bpt', 'davpt', 'lora', 'adaptformer',
                      'rein']
    assert benchmark_tool.METHODS['lora'].label == 'LoRA (q, v; r = 8)'
