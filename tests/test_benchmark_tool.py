"""tools/analysis/benchmark.py's untimed counts, on a tiny ViT."""
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


@pytest.fixture(scope='module')
def costs(benchmark_tool):
    """untimed_costs of the frozen ViT and of CVPT, by method."""
    cases = benchmark_tool.build_cases(SIZE, [PROMPTS], torch.device('cpu'),
                                       ARCH)
    images = torch.randn(BATCH, 3, SIZE, SIZE)
    return {case.config.method: benchmark_tool.untimed_costs(case, images)
            for case in cases}


def test_cvpt_inference_flops_are_the_folded_cross_attention(costs):
    """With the prompt cache in place, CVPT's inference adds exactly the
    folded cross-attention's two matrix products per layer: logits x M
    (tokens x D x H m) and A U (tokens x H m x D), 2 FLOPs a multiply-add.
    The one-off fold (4 m D^2 a layer) is not an inference cost."""
    tokens = BATCH * ((SIZE // PATCH)**2 + 1)
    per_layer = 2 * (2 * tokens * DIMS * HEADS * PROMPTS)
    extra = costs['cvpt']['infer_gflops'] - costs['frozen']['infer_gflops']
    assert extra * 1e9 == pytest.approx(LAYERS * per_layer, rel=1e-9)


def test_trainable_parameters_are_the_prompts(costs):
    assert costs['frozen']['trainable'] == 0
    assert costs['vpt']['trainable'] == LAYERS * PROMPTS * DIMS
    assert costs['cvpt']['trainable'] == LAYERS * PROMPTS * DIMS


def test_vpt_inference_flops_grow_with_the_sequence(costs):
    """VPT-deep runs the same blocks on m more tokens per image."""
    assert costs['vpt']['infer_gflops'] > costs['frozen']['infer_gflops']
    assert costs['vpt']['infer_peak_mib'] > costs['frozen']['infer_peak_mib']
