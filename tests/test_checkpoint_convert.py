"""The ViT checkpoint converter: timm / JAX weights -> mmseg ViT features."""
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmseg.models.backbones import VisionTransformer as MMSegViT
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer as TimmViT
from timm.models.vision_transformer import _load_weights

from mmseg_cvpt.models.checkpoint_convert import (convert_timm_vit,
                                                  load_and_convert)
from tool_loading import load_tool

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO, 'tools', 'model_converters', 'vit2mmseg.py')

IMG, PATCH, DIM, DEPTH, HEADS, CLASSES = 32, 8, 48, 2, 3, 10
GRID = IMG // PATCH
# 6 top-level tensors (patch conv w/b, cls, pos, final norm w/b) + 12/layer.
NUM_CONVERTED = 6 + 12 * DEPTH


def timm_vit():
    """A tiny timm ViT with every parameter randomised (biases included)."""
    torch.manual_seed(0)
    model = TimmViT(img_size=IMG, patch_size=PATCH, embed_dim=DIM,
                    depth=DEPTH, num_heads=HEADS, num_classes=CLASSES)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.2)
    return model.eval()


def mmseg_vit(**kwargs):
    """The matching stock mmseg ViT (timm/JAX need patch bias, LN eps 1e-6)."""
    return MMSegViT(img_size=IMG, patch_size=PATCH, embed_dims=DIM,
                    num_layers=DEPTH, num_heads=HEADS, out_indices=[DEPTH - 1],
                    final_norm=True, patch_bias=True,
                    norm_cfg=dict(type='LN', eps=1e-6), **kwargs)


def assert_same_features(timm_model, mmseg_model):
    """Last-layer patch tokens of timm vs mmseg's (B, C, H, W) output map."""
    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))
    timm_model.eval()
    mmseg_model.eval()  # mmseg's ViT.train() returns None: no chaining
    with torch.no_grad():
        tokens = timm_model.forward_features(x)[:, 1:]
        expected = tokens.reshape(2, GRID, GRID, DIM).permute(0, 3, 1, 2)
        (actual, ) = mmseg_model(x)
    assert actual.shape == (2, DIM, GRID, GRID)
    diff = (actual - expected).abs().max().item()
    assert diff < 1e-5, f'max abs diff {diff}'


@pytest.fixture
def run_tool(monkeypatch, capsys):
    """``run_tool(*args)``: tools/model_converters/vit2mmseg.py ARGS as its
    command line runs it (``run_tool(main)``: an input error is one line on
    stderr and status 2), in this process: the finished run's
    ``returncode``, ``stdout`` and ``stderr``. Another error is raised, as
    the process would end with its traceback."""
    module = load_tool('model_converters/vit2mmseg.py')

    def run(*args):
        argv = [TOOL, *map(str, args)]
        monkeypatch.setattr(sys, 'argv', argv)
        capsys.readouterr()
        with pytest.raises(SystemExit) as end:
            module.run_tool(module.main)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(argv, end.value.code, out.out,
                                           out.err)

    return run


def random_jax_npz(path):
    """A JAX ViT-B_16.npz-style archive of random weights for the tiny ViT."""
    rng = np.random.default_rng(0)
    head_dim, mlp = DIM // HEADS, 4 * DIM
    shapes = {
        'embedding/kernel': (PATCH, PATCH, 3, DIM),
        'embedding/bias': (DIM, ),
        'cls': (1, 1, DIM),
        'Transformer/posembed_input/pos_embedding': (1, GRID * GRID + 1, DIM),
        'Transformer/encoder_norm/scale': (DIM, ),
        'Transformer/encoder_norm/bias': (DIM, ),
        'head/kernel': (DIM, CLASSES),
        'head/bias': (CLASSES, ),
        'pre_logits/kernel': (DIM, DIM),
        'pre_logits/bias': (DIM, ),
    }
    for i in range(DEPTH):
        block = f'Transformer/encoderblock_{i}/'
        mha = block + 'MultiHeadDotProductAttention_1/'
        for name in ('LayerNorm_0', 'LayerNorm_2'):
            shapes[f'{block}{name}/scale'] = (DIM, )
            shapes[f'{block}{name}/bias'] = (DIM, )
        for name in ('query', 'key', 'value'):
            shapes[f'{mha}{name}/kernel'] = (DIM, HEADS, head_dim)
            shapes[f'{mha}{name}/bias'] = (HEADS, head_dim)
        shapes[mha + 'out/kernel'] = (HEADS, head_dim, DIM)
        shapes[mha + 'out/bias'] = (DIM, )
        shapes[block + 'MlpBlock_3/Dense_0/kernel'] = (DIM, mlp)
        shapes[block + 'MlpBlock_3/Dense_0/bias'] = (mlp, )
        shapes[block + 'MlpBlock_3/Dense_1/kernel'] = (mlp, DIM)
        shapes[block + 'MlpBlock_3/Dense_1/bias'] = (DIM, )
    arrays = {k: rng.normal(0, 0.2, s).astype(np.float32)
              for k, s in shapes.items()}
    np.savez(path, **arrays)
    return arrays


def test_timm_pth_via_cli_and_mmseg_init_weights(tmp_path, run_tool):
    model = timm_vit()
    src = tmp_path / 'timm_vit.pth'
    torch.save({'model': model.state_dict()}, src)
    dst = tmp_path / 'out' / 'vit_mmseg.pth'

    proc = run_tool(src, dst)

    assert proc.returncode == 0, proc.stderr
    assert f'converted {NUM_CONVERTED} tensors from timm layout' in proc.stdout
    assert "dropped 2 keys: ['head.bias', 'head.weight']" in proc.stdout
    assert os.listdir(dst.parent) == ['vit_mmseg.pth']  # no temp file left
    # The configs' route: mmseg's own Pretrained init_cfg loading.
    backbone = mmseg_vit(init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    backbone.init_weights()
    assert_same_features(model, backbone)


def test_timm_safetensors_via_function(tmp_path):
    model = timm_vit()
    src = tmp_path / 'model.safetensors'
    save_file(model.state_dict(), str(src))

    result = load_and_convert(str(src))

    assert result.src_format == 'timm'
    assert len(result.state_dict) == NUM_CONVERTED
    backbone = mmseg_vit()
    backbone.load_state_dict(result.state_dict, strict=True)
    assert_same_features(model, backbone)


def test_jax_npz_matches_timm_loader(tmp_path):
    src = tmp_path / 'ViT-B_16.npz'
    random_jax_npz(src)
    reference = timm_vit()
    _load_weights(reference, str(src))  # timm's independent JAX loader

    result = load_and_convert(str(src))

    assert result.src_format == 'jax'
    assert result.dropped == ['head/bias', 'head/kernel', 'pre_logits/bias',
                              'pre_logits/kernel']
    backbone = mmseg_vit()
    backbone.load_state_dict(result.state_dict, strict=True)
    assert_same_features(reference, backbone)


def test_cli_src_format_jax_on_npz(tmp_path, run_tool):
    src, dst = tmp_path / 'w.npz', tmp_path / 'w_mmseg.pth'
    random_jax_npz(src)
    proc = run_tool(src, dst, '--src-format', 'jax')
    assert proc.returncode == 0, proc.stderr
    assert f'converted {NUM_CONVERTED} tensors from jax layout' in proc.stdout
    assert dst.is_file()


def test_missing_file(tmp_path, run_tool):
    missing = tmp_path / 'nope.pth'
    with pytest.raises(FileNotFoundError, match='checkpoint not found'):
        load_and_convert(str(missing))
    proc = run_tool(missing, tmp_path / 'out.pth')
    assert proc.returncode == 2
    assert f'vit2mmseg.py: error: checkpoint not found: {missing}' in \
        proc.stderr
    assert not (tmp_path / 'out.pth').exists()


@pytest.mark.parametrize('name', ['junk.pth', 'junk.npz', 'junk.safetensors'])
def test_unreadable_file(tmp_path, name):
    src = tmp_path / name
    src.write_text('not a checkpoint')
    with pytest.raises(ValueError, match=re.escape(
            f'cannot read {src}: expected a JAX .npz, a .safetensors file '
            'or a torch checkpoint')):
        load_and_convert(str(src))


def test_unknown_layout(tmp_path):
    src = tmp_path / 'other.pth'
    torch.save({'encoder.conv.weight': torch.zeros(1)}, src)
    with pytest.raises(ValueError, match=r"unknown checkpoint layout: found "
                       r"keys \['encoder.conv.weight'\]; expected timm"):
        load_and_convert(str(src))


def test_unrecognised_timm_keys():
    state_dict = timm_vit().state_dict()
    state_dict['blocks.0.ls1.gamma'] = torch.ones(DIM)  # LayerScale: no mmseg
    with pytest.raises(ValueError, match=r"unrecognised keys in timm ViT "
                       r"checkpoint: \['blocks.0.ls1.gamma'\]"):
        convert_timm_vit(state_dict)


def test_incomplete_timm_checkpoint():
    state_dict = timm_vit().state_dict()
    del state_dict['blocks.1.mlp.fc2.weight']
    with pytest.raises(ValueError, match=r"incomplete timm ViT checkpoint: "
                       r"found 2 transformer layers, missing converted keys "
                       r"\['layers.1.ffn.layers.1.weight'\]"):
        convert_timm_vit(state_dict)


def test_jax_missing_and_wrong_format(tmp_path):
    src = tmp_path / 'partial.npz'
    arrays = random_jax_npz(src)
    del arrays['Transformer/encoder_norm/scale']
    np.savez(src, **arrays)
    with pytest.raises(ValueError, match="JAX ViT checkpoint misses key "
                       "'Transformer/encoder_norm/scale'"):
        load_and_convert(str(src))
    timm_src = tmp_path / 'timm.pth'
    torch.save(timm_vit().state_dict(), timm_src)
    with pytest.raises(ValueError, match='not a JAX ViT checkpoint'):
        load_and_convert(str(timm_src), src_format='jax')


def test_already_mmseg_layout(tmp_path):
    src = tmp_path / 'mmseg.pth'
    torch.save(mmseg_vit().state_dict(), src)
    with pytest.raises(ValueError, match='already in mmseg ViT layout'):
        load_and_convert(str(src))
