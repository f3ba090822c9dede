"""BPT: query statistics, whitened / bilinear prompt providers, calibration
hook, configs and the burstiness tool."""
import logging
import os.path as osp
import re

import pytest
import torch
from mmengine.logging import MMLogger

from mmseg_cvpt.engine import PromptCalibrationHook
from mmseg_cvpt.models import calibrate_prompts, prompt_query_statistics
from test_backbones import TINY, build, layer_norm, mlp, sa
from tiny_runs import (REPO, check_test_output, data_options,
                       dist_train_demo, parse_counts, run_in_process,
                       train_demo, write_config)
from tool_loading import count_params_output, load_tool

pytestmark = pytest.mark.filterwarnings('ignore:pkg_resources is deprecated')

BPT_DEMO = osp.join(REPO, 'configs', 'bpt', 'upernet_vittiny_ade20k_demo.py')
D, L, M = TINY['embed_dims'], TINY['num_layers'], 4


def images(num=8, seed=1):
    return torch.randn(num, 3, 32, 32, generator=torch.Generator().manual_seed(
        seed))


def z_of(mha, u):
    """z = W_k^T (W_q u + b_q), written out."""
    w_q, w_k, _ = mha.in_proj_weight.chunk(3)
    b_q = mha.in_proj_bias.chunk(3)[0]
    return (u @ w_q.T + b_q) @ w_k


def explicit_query_inputs(model, x, position=None):
    """The prompt-free model's tokens that query each layer's prompts:
    LN1(x) for VPT, the cross-attention's input at ``position`` for CVPT."""
    inputs = []
    for layer in model.vit.layers:
        attended = x + sa(layer, x)

        def mlp_res(t):
            return t + mlp(layer, layer_norm(layer.ln2, t))

        if position is None:
            inputs.append(layer_norm(layer.ln1, x))
            x = mlp_res(attended)
        elif position in (1, 2):
            inputs.append(x)
            x = mlp_res(attended)
        elif position in (3, 4):
            inputs.append(attended)
            x = mlp_res(attended)
        else:
            x = mlp_res(attended)
            inputs.append(x)
    return inputs


@pytest.mark.parametrize('type_, position', [('VPTViT', None),
                                             *[('CVPTViT', p)
                                               for p in range(1, 6)]])
def test_query_statistics_match_explicit_computation(type_, position):
    kwargs = {} if position is None else dict(ca_position=position)
    model = build(type_, num_prompts=M, **kwargs).eval()
    batch = images()
    with torch.no_grad():
        x = model.vit.embed(batch).x
        inputs = explicit_query_inputs(model, x, position)
        statistics = prompt_query_statistics(model, batch)
    assert statistics.shape == (L, D, D)
    for index, u in enumerate(inputs):
        z = z_of(model.vit.layers[index].attn.attn, u.flatten(0, 1)).double()
        expected = z.T @ z / z.shape[0]
        torch.testing.assert_close(
            statistics[index], expected, rtol=1e-5, atol=1e-6 *
            expected.abs().max().item())


def test_statistics_of_own_cross_attention_weights():
    """CVPT with its own CA weights ('random'): z uses those weights."""
    model = build('CVPTViT', num_prompts=M, ca_weights='random').eval()
    batch = images()
    with torch.no_grad():
        u = explicit_query_inputs(model, model.vit.embed(batch).x, 3)[1]
        z = z_of(model.cross_attns[1], u.flatten(0, 1)).double()
        statistics = prompt_query_statistics(model, batch)
    torch.testing.assert_close(statistics[1], z.T @ z / z.shape[0])


def test_calibration_is_a_token_weighted_mean():
    model = build('CVPTViT', num_prompts=M,
                  prompt_cfg=dict(type='WhitenedPrompts'))
    a, b = images(3, seed=2), images(5, seed=3)
    statistics, count = calibrate_prompts(model, [a, b])
    assert count == 8 * 17  # 4 x 4 patches + the class token
    torch.testing.assert_close(
        statistics, prompt_query_statistics(model, torch.cat((a, b))))
    assert model.prompts.is_calibrated


def leading_directions(statistics, count):
    return torch.linalg.eigh(statistics)[1][..., -count:]


@pytest.mark.parametrize('type_', ['VPTViT', 'CVPTViT'])
@pytest.mark.parametrize('trainable', [False, True])
def test_whitened_prompts(type_, trainable):
    model = build(
        type_,
        num_prompts=M,
        prompt_cfg=dict(
            type='WhitenedPrompts', eps=1e-9,
            trainable_whitening=trainable))
    provider = model.prompts
    assert isinstance(provider.whitening, torch.nn.Parameter) == trainable
    assert not provider.is_calibrated
    torch.testing.assert_close(provider(), provider.tokens)  # identity
    statistics, _ = calibrate_prompts(model, [images(8)])  # 136 > D tokens
    whitening = provider.whitening.double()
    torch.testing.assert_close(whitening, whitening.mT)
    white = whitening.mT @ statistics @ whitening
    vectors = leading_directions(statistics, D // 2)
    on_leading = vectors.mT @ white @ vectors
    scale = on_leading.diagonal(dim1=-2, dim2=-1).mean(-1)
    torch.testing.assert_close(
        on_leading, scale[:, None, None] * torch.eye(D // 2).double(),
        rtol=0, atol=1e-3 * scale.max().item())
    # normalised to a mean squared singular value of 1
    torch.testing.assert_close(
        whitening.square().sum((-2, -1)), torch.full((L, ), float(D)).double())
    torch.testing.assert_close(provider(),
                               provider.tokens @ provider.whitening)


@pytest.mark.parametrize('type_', ['VPTViT', 'CVPTViT'])
def test_bilinear_prompts(type_):
    rank = 6
    model = build(
        type_,
        num_prompts=M,
        prompt_cfg=dict(type='BilinearPrompts', rank=rank, eps=1e-9))
    provider = model.prompts
    assert provider.coefficients.shape == (L, M, rank)
    torch.testing.assert_close(provider.basis[0], torch.eye(D, rank))
    statistics, _ = calibrate_prompts(model, [images(8)])
    basis = provider.basis.double()
    white = basis.mT @ statistics @ basis
    scale = white.diagonal(dim1=-2, dim2=-1).mean(-1)
    torch.testing.assert_close(
        white, scale[:, None, None] * torch.eye(rank).double(), rtol=0,
        atol=1e-4 * scale.max().item())
    # the basis spans the p leading principal directions of S
    leading = leading_directions(statistics, rank)
    projector = leading @ leading.mT
    torch.testing.assert_close(projector @ basis, basis)
    torch.testing.assert_close(provider(),
                               provider.coefficients @ provider.basis.mT)


@pytest.mark.parametrize('prompt_cfg', [
    dict(type='WhitenedPrompts'),
    dict(type='WhitenedPrompts', trainable_whitening=True),
    dict(type='BilinearPrompts', rank=8),
])
def test_rank_deficient_statistics_stay_finite(prompt_cfg):
    model = build('CVPTViT', num_prompts=M, prompt_cfg=prompt_cfg)
    statistics, count = calibrate_prompts(model, [images(1)])
    assert count == 17 < D
    assert torch.linalg.matrix_rank(statistics[0]) <= 17
    assert torch.isfinite(model.prompts()).all()
    assert all(torch.isfinite(out).all() for out in model(images(2)))


def test_prompt_scale_matches_layer_prompts():
    """Calibrated or not, the prompts start with the RMS of LayerPrompts'
    init (same init, same width), within sampling noise."""
    embed = dict(TINY, embed_dims=96, num_heads=4)

    def rms(prompt_cfg, calibrate):
        torch.manual_seed(0)
        from mmseg.registry import MODELS
        model = MODELS.build(
            dict(type='CVPTViT', num_prompts=64, prompt_cfg=prompt_cfg,
                 **embed))
        if calibrate:
            calibrate_prompts(model, [images(16)])
        return model.prompts().detach().square().mean().sqrt().item()

    reference = rms(dict(type='LayerPrompts'), False)
    for cfg in (dict(type='WhitenedPrompts'),
                dict(type='BilinearPrompts', rank=24)):
        for calibrate in (False, True):
            assert rms(cfg, calibrate) == pytest.approx(reference, rel=0.15)


@pytest.mark.parametrize('prompt_cfg, expected', [
    (dict(type='WhitenedPrompts'), L * M * D),
    (dict(type='WhitenedPrompts', trainable_whitening=True),
     L * (M * D + D * D)),
    (dict(type='BilinearPrompts', rank=5), L * (M * 5 + D * 5)),
])
@pytest.mark.parametrize('type_', ['VPTViT', 'CVPTViT'])
def test_trainable_counts(type_, prompt_cfg, expected):
    model = build(type_, num_prompts=M, prompt_cfg=prompt_cfg)
    assert sum(p.numel() for p in model.parameters()
               if p.requires_grad) == expected


@pytest.mark.parametrize('prompt_cfg, match', [
    (dict(type='BilinearPrompts', rank=0), 'rank'),
    (dict(type='BilinearPrompts', rank=D + 1), 'rank'),
    (dict(type='BilinearPrompts', rank=2.5), 'rank'),
    (dict(type='BilinearPrompts'), 'rank'),
    (dict(type='WhitenedPrompts', eps=0), 'eps'),
    (dict(type='BilinearPrompts', rank=4, eps=-1.), 'eps'),
    (dict(type='WhitenedPrompts', trainable_whitening='yes'),
     'trainable_whitening'),
    (dict(type='WhitenedPrompts', init='he'), 'prompt init'),
    (dict(type='WhitenedPrompts', embed_dims=8), 'embed_dims'),
])
def test_bad_provider_arguments(prompt_cfg, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build('VPTViT', num_prompts=M, prompt_cfg=prompt_cfg)


def test_calibration_errors():
    plain = build('VPTViT', num_prompts=M)
    with pytest.raises(TypeError, match='WhitenedPrompts'):
        calibrate_prompts(plain, [images(1)])
    model = build('VPTViT', num_prompts=M,
                  prompt_cfg=dict(type='WhitenedPrompts'))
    with pytest.raises(ValueError, match='no image batches'):
        calibrate_prompts(model, [])
    with pytest.raises(ValueError, match='shape'):
        model.prompts.set_statistics(torch.eye(D))
    for bad in (dict(num_images=0), dict(batch_size=True)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            PromptCalibrationHook(**bad)


def test_uncalibrated_training_says_so():
    model = build('VPTViT', num_prompts=M,
                  prompt_cfg=dict(type='BilinearPrompts', rank=4))
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        model.eval()(images(1))
        model.train()
        model(images(1))
        model(images(1))
    finally:
        logger.removeHandler(handler)
    warnings = [m for m in messages if 'BilinearPrompts is not calib' in m]
    assert len(warnings) == 1 and 'PromptCalibrationHook' in warnings[0]


def test_calibration_invalidates_the_cvpt_cache():
    model = build('CVPTViT', num_prompts=M,
                  prompt_cfg=dict(type='WhitenedPrompts')).eval()
    batch = images(2)
    with torch.no_grad():
        before = model(batch)
        calibrate_prompts(model, [images(8)])
        after = model(batch)
        model.prompt_cache.clear()
        fresh = model(batch)
    assert not torch.equal(before[0], after[0])
    torch.testing.assert_close(after, fresh, rtol=0, atol=0)


# ---- through the runner ---------------------------------------------------
def test_demo_trains_calibrates_and_tests(demo_root, tmp_path):
    """tools/train.py on the BPT demo logs the calibration; tools/test.py
    --aug-test evaluates its checkpoint."""
    work = str(tmp_path / 'train')
    out = run_in_process('train.py', [
        BPT_DEMO, '--work-dir', work, '--cfg-options',
        *data_options(demo_root, iters=2)])
    assert re.search(
        r'PromptCalibrationHook: calibrated BilinearPrompts of 4 layers on '
        r'1,040 query tokens', out), out[-3000:]  # 16 images x (64 + 1)
    assert 'VPTViT: 2,304 trainable' in out  # 4 x (8 x 8 + 64 x 8)
    ckpt = torch.load(osp.join(work, 'iter_2.pth'))['state_dict']
    assert bool(ckpt['backbone.prompts.calibrated'])
    out = run_in_process('test.py', [
        BPT_DEMO, osp.join(work, 'iter_2.pth'), '--aug-test', '--work-dir',
        tmp_path / 'test', '--cfg-options', *data_options(demo_root)])
    assert 'merging 12 views per image' in out
    check_test_output(out, str(tmp_path / 'test'))
    assert 'not calibrated' not in out


def test_resume_keeps_the_calibration(demo_root, tmp_path):
    """Calibrated once; 2 iterations + --resume to 4 == 4 in one go, bit for
    bit (the resumed run keeps the checkpoint's matrices)."""
    cfg = write_config(
        tmp_path / 'resume.py', f'''
        _base_ = [{BPT_DEMO!r}]
        param_scheduler = [dict(type='PolyLR', power=1.0, by_epoch=False,
                                begin=0, end=4)]
        train_cfg = dict(max_iters=4, val_interval=4)
        default_hooks = dict(checkpoint=dict(interval=2))
        ''')

    out = train_demo(cfg, tmp_path / 'straight', demo_root)
    assert out.count('calibrated BilinearPrompts') == 1
    train_demo(cfg, tmp_path / 'resumed', demo_root, 'train_cfg.max_iters=2')
    out = train_demo(cfg, tmp_path / 'resumed', demo_root, resume=True)
    assert 'resumed epoch: 0, iter: 2' in out
    assert 'calibrated matrices from the checkpoint are kept' in out
    assert 'calibrated BilinearPrompts' not in out
    straight = torch.load(tmp_path / 'straight' / 'iter_4.pth')['state_dict']
    resumed = torch.load(tmp_path / 'resumed' / 'iter_4.pth')['state_dict']
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name


@pytest.mark.tool
def test_two_ranks_end_with_identical_whitening(demo_root, tmp_path,
                                                hook_module):
    """Two gloo ranks calibrate on different images and reduce: the same
    (fixed) whitening matrices on both."""
    cfg = write_config(
        tmp_path / 'dist.py', f'''
        _base_ = [{BPT_DEMO!r}]
        custom_imports = dict(
            imports=['mmseg_cvpt', 'dump_trainable_hook'],
            allow_failed_imports=False)
        model = dict(backbone=dict(prompt_cfg=dict(
            _delete_=True, type='WhitenedPrompts')))
        custom_hooks = [dict(type='PromptCalibrationHook', num_images=8),
                        dict(type='DumpModuleStateHook',
                             module='backbone.prompts',
                             name='white')]
        ''')
    work_dir = tmp_path / 'work'
    out = dist_train_demo(cfg, work_dir, demo_root, 1, hook_module)
    assert 'on 520 query tokens' in out  # 8 images over both ranks
    ranks = [torch.load(work_dir / f'white{r}.pth') for r in (0, 1)]
    assert bool(ranks[0]['calibrated'])
    assert not torch.equal(ranks[0]['whitening'][0], torch.eye(64))
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name


# ---- tools ----------------------------------------------------------------
def test_count_params_of_the_bpt_config(capsys):
    out = count_params_output(
        osp.join(REPO, 'configs', 'bpt', 'upernet_vitb_ade20k.py'), capsys)
    assert parse_counts(out)['backbone'] == 12 * (50 * 50 + 768 * 50)
    assert 'Method: BPT (VPTViT)' in out  # the registry's, by config
    assert re.search(r'prompts\.basis\s+\(12, 768, 50\)\s+460,800', out)


def test_burstiness_tool(tmp_path):
    burstiness = load_tool('analysis/burstiness.py')
    rows = burstiness.main([
        '--img-size', '32', '--patch-size', '8', '--embed-dims', '64',
        '--num-layers', '4', '--num-heads', '4', '--num-random-images', '8',
        '--out', str(tmp_path)
    ])
    assert len(rows) == 4 * 2  # 4 layers x (VPT, CVPT)
    for row in rows:
        assert row['tokens'] == 8 * 17
        assert row['kurtosis_raw'] >= -2 and row['kurtosis_white'] >= -2
        assert row['condition'] > 1
    samples = torch.Generator().manual_seed(0)
    gaussian = torch.randn(200_000, 2, generator=samples).double()
    laplace = torch.distributions.Laplace(0., 1.).sample((200_000, 2))
    assert burstiness.excess_kurtosis(gaussian) == pytest.approx(0, abs=0.1)
    assert burstiness.excess_kurtosis(laplace.double()) == pytest.approx(
        3, abs=0.3)
    assert (tmp_path / 'burstiness.md').read_text().count('| CVPT |') == 4
    assert (tmp_path / 'burstiness.csv').read_text().count('\n') == 9
    assert (tmp_path / 'burstiness.png').stat().st_size > 10_000
