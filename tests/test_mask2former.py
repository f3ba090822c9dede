"""Mask2Former (mmseg's Mask2FormerHead on the ViT's outputs through
mmseg's MultiLevelNeck) under every method and both ViT families: training,
--aug-test, tuned-only checkpoints, task packages in mmseg's init_model and
several Mask2Former tasks on one frozen backbone."""
import copy
import os.path as osp

import pytest
import torch
from mmseg.apis import inference_model, init_model
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from mmseg_cvpt.apis import build_model
from mmseg_cvpt.engine import load_config
from mmseg_cvpt.methods import BUILT_IN, METHODS
from mmseg_cvpt.models import tuned_state_dict
from test_pretrained_demo import read_rows
from test_task_packages import (SEG_IMAGE, as_options, assert_same_state,
                                check_multi_task, make_task, state_of)
from tiny_runs import (COMPARE_RUNS, REPO, check_test_output, data_options,
                       printed_miou, run_in_process, validation_metric)
from tool_loading import load_tool

SETTINGS = {'mmseg': 'mask2former_vittiny_ade20k_demo.py',
            'timm': 'mask2former_vittiny_dinov2_ade20k_demo.py'}
#: what Mask2Former adds to a head's state: its queries and level embeddings
QUERY_KEYS = {'decode_head.query_embed.weight',
              'decode_head.query_feat.weight',
              'decode_head.level_embed.weight'}
#: Rein's, whose queries come from the backbone (replace_query_feat)
LINKED_QUERY_KEYS = {
    'decode_head.level_embed.weight', 'decode_head.query_feat_proj.weight',
    'backbone.query_transform.weight', 'backbone.query_merge.weight'}


def config_of(method, family):
    return osp.join(REPO, 'configs', method.config(SETTINGS[family]))


@pytest.mark.parametrize('family', SETTINGS)
@pytest.mark.parametrize('method', BUILT_IN, ids=lambda m: m.name)
def test_every_method_trains_and_tests_with_aug_test(method, family, tmp_path,
                                                     demo_root):
    """The method's Mask2Former demo config: 2 iterations of tools/train.py,
    then tools/test.py --aug-test on the checkpoint, both in this process.
    The printed mIoU is the one logged; the checkpoint holds exactly what
    was tuned (the method's tensors, the neck and the head, queries
    included); the test merges the 12 views of each image."""
    config = config_of(method, family)
    work_dir = tmp_path / 'train'
    options = data_options(demo_root, 2)
    out = run_in_process('train.py', [config, '--work-dir', work_dir,
                                      '--cfg-options', *options])
    assert printed_miou(out) == pytest.approx(validation_metric(work_dir),
                                              abs=0.01)
    state = torch.load(work_dir / 'iter_2.pth', weights_only=False)
    model = build_model(load_config(config, as_options(options)))
    assert set(state['state_dict']) == set(tuned_state_dict(model))
    heads = {key for key in model.state_dict()
             if not key.startswith('backbone.')}
    assert heads <= set(state['state_dict'])
    assert (LINKED_QUERY_KEYS if method.name == 'rein' else QUERY_KEYS) <= \
        set(state['state_dict'])
    out = run_in_process('test.py', [
        config, work_dir / 'iter_2.pth', '--aug-test', '--work-dir',
        tmp_path / 'test', '--cfg-options', *data_options(demo_root)])
    check_test_output(out, str(tmp_path / 'test'))
    assert 'merged 48 views of 4 images (12 per image)' in out


@pytest.fixture(scope='module')
def mask2former_tasks(tmp_path_factory):
    """Two CVPT tasks under the demo's Mask2Former on the shipped demo ViT,
    prompts and heads drawn with seeds 0 and 1: full checkpoints and task
    packages."""
    root = tmp_path_factory.mktemp('mask2former_tasks')
    cfg = load_config(config_of(METHODS['cvpt'], 'mmseg'))
    cfg.model.backbone.init_cfg.checkpoint = osp.join(
        REPO, 'pretrain', 'vit_tiny_demo_mmseg.pth')
    return {task: make_task(cfg, root, task, seed)
            for seed, task in enumerate('ab')}


def test_package_loads_in_init_model_to_the_exact_model(mask2former_tasks):
    """A Mask2Former task package (the head travels in it, queries
    included) through mmseg's init_model, with its own config: the full
    model's state and its predictions exactly."""
    task = mask2former_tasks['a']
    package = state_of(task['package'])
    assert QUERY_KEYS <= set(package)
    assert not any(key.startswith('backbone.layers') for key in package)
    model = init_model(task['cfg'], task['package'], device='cpu')
    reference = init_model(task['cfg'], task['full'], device='cpu')
    assert_same_state(model.state_dict(), reference.state_dict())
    got = inference_model(model, SEG_IMAGE).seg_logits.data
    expected = inference_model(reference, SEG_IMAGE).seg_logits.data
    assert (got - expected).abs().max() == 0


def test_multi_task_with_mask2former_heads(mask2former_tasks):
    data = dict(inputs=list(
        torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)))
    check_multi_task(mask2former_tasks, data, ['b', 'a', 'b'],
                     lambda r: r.seg_logits.data)


# ---- Rein's query link ------------------------------------------------------
@pytest.mark.parametrize('replace_query_feat', [True, False])
def test_rein_head_is_mask2former_with_the_linked_queries(replace_query_feat):
    """ReinMask2FormerHead on (features, Q) equals mmseg's Mask2FormerHead
    with its learned query embedding set to Q (Rein's tokens pooled and
    merged, from the backbone) and, with replace_query_feat, its query
    features set to Q W_f^T + b_f."""
    cfg = load_config(config_of(METHODS['rein'], 'mmseg'))
    cfg.model.decode_head.replace_query_feat = replace_query_feat
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    head = model.decode_head
    image = torch.rand(2, 3, 64, 64)
    samples = [SegDataSample(metainfo=dict(img_shape=(64, 64),
                                           pad_shape=(64, 64)))] * 2
    with torch.no_grad():
        features, queries = model.extract_feat(image)
        assert torch.equal(queries, model.backbone.query_embeddings())
        got = head((features, queries), samples)
    plain_cfg = copy.deepcopy(cfg.model.decode_head)
    plain_cfg.update(type='Mask2FormerHead', _scope_='mmseg')
    del plain_cfg['replace_query_feat']
    plain = MODELS.build(plain_cfg).eval()
    state = {k: v for k, v in head.state_dict().items()
             if not k.startswith('query_feat_proj')}
    missing = plain.load_state_dict(state, strict=False).missing_keys
    assert sorted(missing) == ['query_embed.weight'] + \
        ['query_feat.weight'] * replace_query_feat
    with torch.no_grad():
        plain.query_embed.weight.copy_(queries)
        if replace_query_feat:
            plain.query_feat.weight.copy_(head.query_feat_proj(queries))
        expected = plain(features, samples)
    for got_layers, expected_layers in zip(got, expected):
        for g, e in zip(got_layers, expected_layers):
            assert torch.allclose(g, e, atol=1e-6)
    assert head.query_embed.weight is None  # no graph kept


def test_rein_head_refuses_queries_of_another_shape():
    cfg = load_config(config_of(METHODS['rein'], 'mmseg'))
    cfg.model.backbone.num_tokens = 12
    model = build_model(cfg)
    with pytest.raises(ValueError,
                       match=r'\(12, 32\), the head takes \(100, 32\)'):
        model.decode_head(model.extract_feat(torch.rand(1, 3, 64, 64)), [
            SegDataSample(metainfo=dict(img_shape=(64, 64),
                                        pad_shape=(64, 64)))])
    cfg.model.backbone.link_token_to_query = False
    with pytest.raises(RuntimeError, match='link_token_to_query=True'):
        build_model(cfg).extract_feat(torch.rand(1, 3, 64, 64))


@pytest.mark.tool
@COMPARE_RUNS
def test_compare_methods_under_mask2former(tmp_path, demo_root):
    """compare_methods.py from a Mask2Former demo config runs the methods'
    Mask2Former namesakes: each row is its run's logged validation mIoU,
    and the run's checkpoint holds Mask2Former's head (Rein's with the
    linked queries)."""
    out = str(tmp_path / 'compare')
    config = config_of(METHODS['cvpt'], 'mmseg')
    assert load_tool('analysis/compare_methods.py').main([
        '--methods', 'baseline', 'rein', '--iters', '2', '--no-aug-test',
        '--out', out, '--config', config, '--cfg-options',
        *data_options(demo_root)]) == 0
    rows = read_rows(out)
    assert [r['method'] for r in rows] == ['head-only', 'Rein']
    for row, keys in zip(rows, (QUERY_KEYS, LINKED_QUERY_KEYS)):
        run_dir = osp.dirname(osp.dirname(row['checkpoint']))
        assert float(row['accuracy']) == pytest.approx(
            validation_metric(osp.join(run_dir, 'train')), abs=0.01)
        assert keys <= set(torch.load(row['checkpoint'])['state_dict'])
