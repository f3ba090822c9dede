"""DA-VPT: Proxy-Anchor loss, guidance of both backbones, class-to-proxy
mapping (k-means, resume, ranks), image labels, configs."""
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS, MODELS

from mmseg_cvpt.engine import ClassProxyHook
from mmseg_cvpt.models import proxy_anchor_loss
from mmseg_cvpt.models.guided import SceneCategories
from test_backbones import TINY, build
from tiny_runs import (REPO, check_test_output, data_options,
                       dist_train_demo, parse_counts, run_in_process,
                       train_demo, write_config)
from tool_loading import count_params_output

pytestmark = pytest.mark.filterwarnings('ignore:pkg_resources is deprecated')

DAVPT_DEMO = osp.join(REPO, 'configs', 'davpt',
                      'upernet_vittiny_ade20k_demo.py')


# ---- the loss -------------------------------------------------------------
def explicit_proxy_anchor(features, proxies, positive, alpha, margin):
    """DA-VPT's proxy-anchor loss (proxy_anchor_loss's docstring), loop by
    loop."""
    f = features / features.norm(dim=1, keepdim=True)
    p = proxies / proxies.norm(dim=1, keepdim=True)
    pos_sum, neg_sum, with_pos = 0., 0., 0
    for j in range(p.shape[0]):
        s = f @ p[j]
        pos = positive[:, j]
        if pos.any():
            with_pos += 1
            pos_sum = pos_sum + torch.log(
                1 + torch.exp(-alpha * (s[pos] - margin)).sum())
        neg_sum = neg_sum + torch.log(
            1 + torch.exp(alpha * (s[~pos] + margin)).sum())
    return pos_sum / max(with_pos, 1) + neg_sum / p.shape[0]


@pytest.mark.parametrize('kind', ['single', 'multi', 'unused_proxy'])
def test_proxy_anchor_loss_and_gradients(kind):
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(6, 8, generator=gen, dtype=torch.float64)
    proxies = torch.randn(4, 8, generator=gen, dtype=torch.float64)
    if kind == 'single':
        labels = torch.tensor([0, 1, 2, 3, 0, 1])
        positive = torch.nn.functional.one_hot(labels, 4).bool()
    elif kind == 'multi':
        labels = torch.rand(6, 4, generator=gen) > 0.5
        labels[0] = True
        positive = labels
    else:  # proxy 3 has no positive in the batch
        labels = torch.tensor([0, 1, 2, 0, 1, 2])
        positive = torch.nn.functional.one_hot(labels, 4).bool()
    assert (not positive[:, 3].any()) == (kind == 'unused_proxy')
    inputs = [features.requires_grad_(), proxies.requires_grad_()]
    for alpha, margin in ((32., 0.1), (4., 0.3)):
        ours = proxy_anchor_loss(*inputs, labels, alpha, margin)
        expected = explicit_proxy_anchor(*inputs, positive, alpha, margin)
        torch.testing.assert_close(ours, expected)
        grads = torch.autograd.grad(ours, inputs)
        expected_grads = torch.autograd.grad(expected, inputs)
        for grad, expected_grad in zip(grads, expected_grads):
            torch.testing.assert_close(grad, expected_grad)


def test_proxy_anchor_label_errors():
    features, proxies = torch.randn(2, 4), torch.randn(3, 4)
    with pytest.raises(ValueError, match=r'\[0, 3\)'):
        proxy_anchor_loss(features, proxies, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r'\(B, 3\)'):
        proxy_anchor_loss(features, proxies, torch.ones(2, 2).bool())


# ---- the guidance on both backbones -----------------------------------------
def guided(type_, **guidance):
    model = build(type_, num_prompts=4,
                  addons=dict(guidance=dict(type='ProxyGuidance',
                                            num_guided=3, **guidance)))
    model.guidance.initialise(3)
    model.guidance.recluster()  # C <= k: class c is proxy c
    return model


def explicit_guidance_losses(model, images, labels, position=None):
    """beta L_PA(X, P) + lambda L_PA(x_cls, P) of the last layer, written
    out from the explicit model of test_backbones."""
    from test_backbones import (attention, layer_norm, mlp, sa)
    x = model.vit.embed(images).x
    m = model.num_prompts
    prompts = model.prompts.tokens
    for i, layer in enumerate(model.vit.layers):
        last = i == len(model.vit.layers) - 1
        if position is None:  # VPT-deep
            rest = x[:, 1:] if i == 0 else x[:, 1 + m:]
            patch_mean = rest.mean(1)
            x = torch.cat((x[:, :1], prompts[i].expand(len(x), -1, -1), rest),
                          1)
            query_input = layer_norm(layer.ln1, x[:, 0])
            x = x + sa(layer, x)
        else:  # CVPT, position 3
            patch_mean = x[:, 1:].mean(1)
            x = x + sa(layer, x)
            query_input = x[:, 0]
            x = x + attention(layer.attn.attn, x, prompts[i])
        x = x + mlp(layer, layer_norm(layer.ln2, x))
    w_q = layer.attn.attn.in_proj_weight.chunk(3)[0]
    b_q = layer.attn.attn.in_proj_bias.chunk(3)[0]
    class_query = query_input @ w_q.T + b_q
    assert last
    proxies = prompts[-1, :3]
    return (0.01 * proxy_anchor_loss(patch_mean, proxies, labels),
            0.01 * proxy_anchor_loss(class_query, proxies, labels))


@pytest.mark.parametrize('type_', ['VPTViT', 'CVPTViT'])
def test_guidance_losses_match_the_equations(type_):
    model = guided(type_)
    model.train()
    model.prompt_dropout.p = 0.
    images = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 1])
    model(images)
    losses = model.guidance.losses(labels)
    patch, cls = explicit_guidance_losses(
        model, images, labels, None if type_ == 'VPTViT' else 3)
    torch.testing.assert_close(losses['loss_guidance_patch'], patch)
    torch.testing.assert_close(losses['loss_guidance_cls'], cls)
    # the features went into the class sums
    assert model.guidance.class_counts.tolist() == [1., 2., 1.]


def test_no_records_at_inference():
    model = guided('CVPTViT').eval()
    model(torch.randn(1, 3, 32, 32))
    assert model.guidance.records == {}
    with pytest.raises(RuntimeError, match='train mode'):
        model.guidance.losses(torch.tensor([0]))


def test_kmeans_groups_separated_class_means():
    model = build('VPTViT', num_prompts=4,
                  addons=dict(guidance=dict(type='ProxyGuidance',
                                            num_guided=3)))
    guidance = model.guidance
    guidance.initialise(9)
    gen = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(3, D, generator=gen),
                                            dim=1)
    truth = torch.tensor([2, 0, 1, 1, 0, 2, 0, 1, 2])
    features = centres[truth] + 0.05 * torch.randn(9, D, generator=gen)
    guidance.accumulate(torch.nn.functional.normalize(features, dim=1),
                        torch.arange(9))
    change = guidance.recluster()
    mapping = guidance.class_to_proxy
    same = truth[:, None] == truth[None]
    assert torch.equal(mapping[:, None] == mapping[None], same)
    assert change['unseen'] == [] and change['num_classes'] == 9
    assert guidance.class_counts.sum() == 0  # sums cleared
    # warm start: the next round, with class 0 unseen, keeps class 0's group
    guidance.accumulate(torch.nn.functional.normalize(features[1:], dim=1),
                        torch.arange(1, 9))
    before = mapping.clone()
    change = guidance.recluster()
    assert change['unseen'] == [0] and change['moved'] == 0
    assert torch.equal(guidance.class_to_proxy, before)


D = TINY['embed_dims']


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_guided=0), 'num_guided'),
    (dict(num_guided=5), 'num_guided'),
    (dict(layers=(3, )), 'outside'),
    (dict(layers=(-4, )), 'outside'),
    (dict(layers=(1, 1)), 'distinct'),
])
def test_bad_guidance_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build('VPTViT', num_prompts=4,
              addons=dict(guidance=dict(
                  dict(type='ProxyGuidance', num_guided=2), **kwargs)))


def test_guided_layer_needs_prompts():
    with pytest.raises(ValueError, match='has no prompts'):
        build('VPTViT', num_prompts=4, prompt_depth='shallow',
              addons=dict(guidance=dict(type='ProxyGuidance',
                                        num_guided=2)))
    with pytest.raises(ValueError, match='ClassProxyHook: interval'):
        ClassProxyHook(interval=0)


# ---- image labels --------------------------------------------------------
def demo_segmentor(demo_root, **model):
    cfg = Config.fromfile(DAVPT_DEMO)
    cfg.merge_from_dict({'train_dataloader.dataset.data_root': demo_root})
    cfg.model.update(model)
    init_default_scope('mmseg')
    segmentor = MODELS.build(cfg.model)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    return segmentor, dataset, cfg


def test_scene_labels_from_the_generated_file(demo_root):
    segmentor, dataset, _ = demo_segmentor(demo_root)
    scenes = dict(line.split() for line in open(
        osp.join(demo_root, 'sceneCategories.txt')))
    batch = pseudo_collate([dataset[i] for i in range(6)])
    labels = segmentor.image_labels(batch['data_samples'])
    names = ['living_room', 'street']
    expected = [
        names.index(scenes[osp.splitext(osp.basename(s.img_path))[0]])
        for s in batch['data_samples']
    ]
    assert labels.tolist() == expected
    assert segmentor.num_image_classes(dataset) == 2


def test_present_labels_are_multi_hot(demo_root):
    segmentor, dataset, _ = demo_segmentor(demo_root, image_labels='present')
    sample = dataset[0]['data_samples']
    labels = segmentor.image_labels([sample])
    values = set(sample.gt_sem_seg.data.unique().tolist()) - {255}
    assert labels.shape == (1, 6) and labels.dtype == torch.bool
    assert set(torch.nonzero(labels[0]).flatten().tolist()) == values


def test_scene_file_errors(demo_root, tmp_path):
    with pytest.raises(FileNotFoundError, match='sceneCategories.txt'):
        SceneCategories(str(tmp_path / 'sceneCategories.txt'))
    (tmp_path / 'sceneCategories.txt').write_text('ADE_a street\n')
    scenes = SceneCategories(str(tmp_path / 'sceneCategories.txt'))
    with pytest.raises(KeyError, match='ADE_b .*not listed in .*sceneCat'):
        scenes.label('images/training/ADE_b.jpg')


def step_changes(model, batch, optim_cfg):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    wrapper = build_optim_wrapper(model, optim_cfg)
    model.train()
    log = model.train_step(batch, wrapper)
    changed = {n for n, p in model.named_parameters()
               if not torch.equal(p, before[n])}
    return log, changed


@pytest.mark.parametrize('plus', [False, True])
def test_segmentor_train_step(demo_root, plus):
    """A real train_step: the guidance losses are logged; only prompts and
    heads change (and the attention biases with DA-VPT+)."""
    segmentor, dataset, cfg = demo_segmentor(demo_root)
    if plus:
        cfg.model.backbone.frozen_exclude = ['in_proj_bias']
        segmentor = MODELS.build(cfg.model)
    segmentor.backbone.guidance.initialise(2)
    segmentor.backbone.guidance.recluster()
    batch = pseudo_collate([dataset[i] for i in range(4)])
    log, changed = step_changes(segmentor, batch, cfg.optim_wrapper)
    assert log['backbone.loss_guidance_patch'] > 0
    assert log['backbone.loss_guidance_cls'] > 0
    backbone = {n for n in changed if n.startswith('backbone.')}
    expected = {'backbone.prompts.tokens'}
    if plus:
        expected |= {f'backbone.vit.layers.{i}.attn.attn.in_proj_bias'
                     for i in range(4)}
    assert backbone == expected
    assert any(n.startswith('decode_head.') for n in changed)


def test_classifier_train_step(tmp_path):
    from mmpretrain.registry import MODELS as CLS_MODELS

    from mmseg_cvpt.engine import load_config
    from test_classification import tiny_options
    from tool_loading import load_tool
    root = str(tmp_path / 'cls')
    load_tool('misc/make_cls_demo_data.py').make_demo_data(
        root, vtab_tasks=('dtd', ), fgvc_tasks=(), num_classes=4, size=32,
        counts=dict(train=8, val=4, test=4), seed=0)
    cfg = load_config(osp.join(REPO, 'configs', 'davpt', 'vitb_vtab_fgvc.py'),
                      dict(tiny_options(root), task='dtd'))
    assert cfg.model.backbone.vit.addons.guidance.beta == 0.01  # VTAB's
    init_default_scope('mmpretrain')
    model = CLS_MODELS.build(cfg.model)
    guidance = model.backbone.vit.guidance
    guidance.initialise(4)
    guidance.recluster()
    from mmpretrain.registry import DATASETS as CLS_DATASETS
    dataset = CLS_DATASETS.build(cfg.train_dataloader.dataset)
    batch = pseudo_collate([dataset[i] for i in range(4)])
    log, changed = step_changes(model, batch, cfg.optim_wrapper)
    assert log['loss_guidance_patch'] > 0 and log['loss_guidance_cls'] > 0
    assert {n for n in changed if n.startswith('backbone.')} == {
        'backbone.vit.prompts.tokens'}
    assert any(n.startswith('head.') for n in changed)


# ---- through the runner --------------------------------------------------
def test_demo_trains_reclusters_and_tests(demo_root, tmp_path):
    work = str(tmp_path / 'train')
    out = run_in_process('train.py', [
        DAVPT_DEMO, '--work-dir', work, '--cfg-options',
        *data_options(demo_root, iters=2), 'custom_hooks.0.interval=1'])
    assert re.search(r'ClassProxyHook: re-clustered 2 classes into 2 '
                     r'proxies on 16 images of the frozen model', out), \
        out[-3000:]
    assert 'ClassProxyHook: re-clustered 2 classes into 2 proxies at ' \
        'iteration 2' in out
    assert re.search(r'backbone\.loss_guidance_patch: \d', out)
    assert re.search(r'backbone\.loss_guidance_cls: \d', out)
    out = run_in_process('test.py', [
        DAVPT_DEMO, osp.join(work, 'iter_2.pth'), '--aug-test', '--work-dir',
        tmp_path / 'test', '--cfg-options', *data_options(demo_root)])
    assert 'merging 12 views per image' in out
    check_test_output(out, str(tmp_path / 'test'))


def present_labels_config(tmp_path, *extra):
    """The demo with the 6 classes present as labels and k=2: clustering."""
    return write_config(
        tmp_path / 'present.py', f'''
        _base_ = [{DAVPT_DEMO!r}]
        model = dict(image_labels='present')
        ''' + ''.join(extra))


def test_resume_keeps_the_mapping(demo_root, tmp_path):
    """Re-clustered every iteration; 2 + --resume to 4 == 4 in one go, bit
    for bit, mapping, centroids and class sums included."""
    cfg = present_labels_config(tmp_path, '''
        param_scheduler = [dict(type='PolyLR', power=1.0, by_epoch=False,
                                begin=0, end=4)]
        train_cfg = dict(max_iters=4, val_interval=4)
        default_hooks = dict(checkpoint=dict(interval=2))
        custom_hooks = [dict(type='ClassProxyHook', interval=1)]
        ''')

    train_demo(cfg, tmp_path / 'straight', demo_root)
    train_demo(cfg, tmp_path / 'resumed', demo_root, 'train_cfg.max_iters=2')
    out = train_demo(cfg, tmp_path / 'resumed', demo_root, resume=True)
    assert "the checkpoint's mapping of 6 classes is kept" in out
    straight = torch.load(tmp_path / 'straight' / 'iter_4.pth')['state_dict']
    resumed = torch.load(tmp_path / 'resumed' / 'iter_4.pth')['state_dict']
    assert straight['backbone.guidance.class_to_proxy'].shape == (6, )
    assert bool(straight['backbone.guidance.mapped'])
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name


@pytest.mark.tool
def test_two_ranks_hold_the_same_mapping(demo_root, tmp_path, hook_module):
    cfg = present_labels_config(tmp_path, '''
        custom_imports = dict(
            imports=['mmseg_cvpt', 'dump_trainable_hook'],
            allow_failed_imports=False)
        custom_hooks = [dict(type='ClassProxyHook', interval=2),
                        dict(type='DumpModuleStateHook',
                             module='backbone.guidance',
                             name='guidance')]
        ''')
    work_dir = tmp_path / 'work'
    out = dist_train_demo(cfg, work_dir, demo_root, 2, hook_module)
    assert 'at iteration 2' in out
    ranks = [torch.load(work_dir / f'guidance{r}.pth') for r in (0, 1)]
    assert ranks[0]['centroids'].abs().sum() > 0
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name


def test_count_params_of_the_davpt_configs(capsys):
    for name in ('upernet_vitb_ade20k.py', 'cvpt_upernet_vitb_ade20k.py'):
        out = count_params_output(osp.join(REPO, 'configs', 'davpt', name),
                                  capsys)
        assert parse_counts(out)['backbone'] == 12 * 200 * 768
