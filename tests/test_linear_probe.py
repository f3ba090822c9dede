"""The linear probe (LinearProbeHead): its equation, DINOv2's "+ms" and class
token variants, and every method training and testing under it."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

import mmseg_cvpt  # noqa: F401  (registers the head)
from mmseg_cvpt.methods import BUILT_IN
from tiny_runs import (REPO, check_test_output, data_options, printed_miou,
                       run_in_process, validation_metric, write_config)

DIMS, CLASSES = 16, 5


def head(**kwargs):
    torch.manual_seed(0)
    return MODELS.build(dict(type='LinearProbeHead', _scope_='mmseg',
                             num_classes=CLASSES, norm_cfg=dict(type='BN'),
                             **kwargs))


def probe(head, features):
    """conv1x1(BN(f)) with the head's own tensors, in eval mode."""
    bn = head.bn
    normed = F.batch_norm(features, bn.running_mean, bn.running_var,
                          bn.weight, bn.bias, False, 0., bn.eps)
    return F.conv2d(normed, head.conv_seg.weight, head.conv_seg.bias)


def settle(head, inputs):
    """A few training forwards (BatchNorm's running statistics move), then
    eval mode."""
    head.train()
    for _ in range(3):
        head(inputs)
    return head.eval()


def maps(batch=2, size=4, layers=4):
    return [torch.randn(batch, DIMS, size, size) + i for i in range(layers)]


def test_the_last_layer_through_batchnorm_and_a_1x1_convolution():
    inputs = maps()
    linear = settle(head(in_channels=DIMS), inputs)
    assert linear.bn.running_mean.abs().sum() > 0
    with torch.no_grad():
        assert torch.allclose(linear(inputs), probe(linear, inputs[-1]),
                              atol=1e-5)
    trainable = sum(p.numel() for p in linear.parameters())
    assert trainable == 2 * DIMS + DIMS * CLASSES + CLASSES


def test_dinov2_ms_and_class_token_variants():
    """+ms: the last four layers' maps concatenated; lin: each patch with
    the class token beside it."""
    inputs = maps()
    four = settle(head(in_channels=[DIMS] * 4, in_index=[0, 1, 2, 3],
                       input_transform='resize_concat'), inputs)
    with torch.no_grad():
        assert torch.allclose(four(inputs),
                              probe(four, torch.cat(inputs, 1)), atol=1e-5)
    pairs = [[m, torch.randn(2, DIMS)] for m in maps()]
    with_cls = settle(head(in_channels=2 * DIMS, with_cls_token=True),
                      pairs)
    patches, cls_token = pairs[-1]
    expected = torch.cat(
        (patches, cls_token[:, :, None, None].expand_as(patches)), 1)
    with torch.no_grad():
        assert torch.allclose(with_cls(pairs), probe(with_cls, expected),
                              atol=1e-5)
    with pytest.raises(ValueError, match="channels is the features' width"):
        head(in_channels=DIMS, channels=DIMS)


LINEAR_HEAD = '''
_base_ = [{base!r}]
model = dict(
    neck=None,
    auxiliary_head=None,
    decode_head=dict(_delete_=True, type='LinearProbeHead', in_channels=64,
                     num_classes=6, align_corners=False))
'''


@pytest.mark.parametrize('method', BUILT_IN, ids=lambda m: m.name)
def test_every_method_trains_and_tests_with_aug_test_under_it(
        method, tmp_path, demo_root):
    """The method's demo config with the linear probe for its heads (as
    configs/baseline/linear_vittiny_ade20k_demo.py does for head-only): 2
    iterations of tools/train.py, then tools/test.py --aug-test on the
    checkpoint, both in this process; the printed mIoU is the one logged."""
    if method.name == 'baseline':
        config = osp.join(REPO, 'configs', 'baseline',
                          'linear_vittiny_ade20k_demo.py')
    else:
        config = write_config(tmp_path / 'linear.py', LINEAR_HEAD.format(
            base=osp.join(REPO, 'configs',
                          method.config('upernet_vittiny_ade20k_demo.py'))))
    work_dir = tmp_path / 'train'
    out = run_in_process('train.py', [config, '--work-dir', work_dir,
                                      '--cfg-options',
                                      *data_options(demo_root, 2)])
    assert printed_miou(out) == pytest.approx(validation_metric(work_dir),
                                              abs=0.01)
    checkpoint = torch.load(work_dir / 'iter_2.pth', weights_only=False)
    heads = {k for k in checkpoint['state_dict']
             if not k.startswith('backbone.')}
    assert heads == {f'decode_head.{key}' for key in (
        'conv_seg.weight', 'conv_seg.bias', 'bn.weight', 'bn.bias',
        'bn.running_mean', 'bn.running_var', 'bn.num_batches_tracked')}
    out = run_in_process('test.py', [
        config, work_dir / 'iter_2.pth', '--aug-test', '--work-dir',
        tmp_path / 'test', '--cfg-options', *data_options(demo_root)])
    check_test_output(out, str(tmp_path / 'test'))
    assert 'views of' in out
