"""VPTViT's fast form (prompts as keys and values only) against its
reference form and the written-out VPT equations.

The eval-mode prompt cache, shared with CVPTViT, is tested with CVPT's in
test_fast_paths.py.
"""
import pytest
import torch
from mmseg.registry import MODELS

from mmseg_cvpt.models.backbones import vpt_vit
from test_fast_paths import TINY, as_tokens, build, max_diff, plain_vpt

TOL = 1e-5
DEPTHS = ['deep', 'shallow', 2]  # of TINY's 3 layers
SIZES = [(32, 32), (40, 56)]


def build_vpt(form='auto', **kwargs):
    return build('VPTViT', num_prompts=5, prompt_form=form, **kwargs)


def relative_diff(got, expected):
    return ((got - expected).abs().max() / expected.abs().max()).item()


def test_form_of_each_layer():
    """Fast where nothing reads the layer's prompt outputs."""
    def forms(**kwargs):
        model = build_vpt(**kwargs)
        return [model.prompts_as_keys_only(i) for i in range(3)]

    assert forms(prompt_depth='deep') == [True, True, True]
    assert forms(prompt_depth=2) == [True, False, False]
    assert forms(prompt_depth='shallow') == [False, False, False]
    assert forms(form='reference') == [False, False, False]


def test_fast_blocks_run_where_chosen(monkeypatch):
    calls = []
    attention = vpt_vit.self_attention_with_prompts
    monkeypatch.setattr(vpt_vit, 'self_attention_with_prompts',
                        lambda *args: calls.append(1) or attention(*args))
    with torch.no_grad():
        build_vpt(prompt_depth=2)(torch.randn(1, 3, 32, 32))
    assert len(calls) == 1


def test_unknown_form_is_rejected():
    with pytest.raises(ValueError, match="prompt_form must be one of"):
        build_vpt(form='fast')


@pytest.mark.parametrize('depth', DEPTHS)
@pytest.mark.parametrize('size', SIZES)
@pytest.mark.parametrize('with_cls_token', [True, False])
def test_both_forms_match_equations(depth, size, with_cls_token):
    images = torch.randn(2, 3, *size)
    outputs = {}
    for form in ('auto', 'reference'):
        model = build_vpt(form, prompt_depth=depth,
                          with_cls_token=with_cls_token)
        with torch.no_grad():
            outputs[form] = model(images)
            expected = plain_vpt(model, images)
        assert max_diff(outputs[form], expected) < TOL
    assert max_diff(outputs['auto'],
                    [as_tokens(e) for e in outputs['reference']]) < TOL


@pytest.mark.parametrize('depth', DEPTHS)
@pytest.mark.parametrize('size', SIZES)
@pytest.mark.parametrize('with_cls_token', [True, False])
def test_train_mode_with_prompt_dropout(depth, size, with_cls_token):
    """Same dropout masks (same seed): same outputs and prompt gradients
    in both forms and from the equations."""
    images = torch.randn(2, 3, *size)
    results = {}
    for form in ('auto', 'reference', 'equations'):
        model = build_vpt('reference' if form == 'equations' else form,
                          prompt_depth=depth, with_cls_token=with_cls_token,
                          prompt_dropout=0.5).train()
        torch.manual_seed(1)
        if form == 'equations':
            prompts = model.prompt_dropout(model.prompts())
            outs = plain_vpt(model, images, prompts)
        else:
            outs = [as_tokens(out) for out in model(images)]
        sum(out.pow(2).mean() for out in outs).backward()
        results[form] = outs, model.prompts.tokens.grad
    expected, expected_grad = results['equations']
    assert expected_grad.abs().max() > 0
    for form in ('auto', 'reference'):
        outs, grad = results[form]
        assert max(relative_diff(o, e) for o, e in zip(outs, expected)) < TOL
        assert relative_diff(grad, expected_grad) < TOL


@pytest.mark.parametrize('rates, fast', [
    (dict(attn_drop_rate=0.1), [False, False, False]),
    (dict(drop_rate=0.1), [False, False, False]),
    (dict(drop_path_rate=0.2), [True, False, False]),  # 0, 0.1, 0.2
])
def test_blocks_that_drop_out_keep_the_reference_form(rates, fast):
    """With frozen_eval=False the frozen blocks train; one that drops out
    would draw its masks over other tokens in the fast form. Same seed,
    same outputs as the reference form."""
    images = torch.randn(2, 3, 32, 32)
    models, outputs = [], []
    for form in ('auto', 'reference'):
        models.append(build_vpt(form, frozen_eval=False, **rates).train())
        torch.manual_seed(1)
        outputs.append(models[-1](images))
    assert [models[0].prompts_as_keys_only(i) for i in range(3)] == fast
    assert max_diff(outputs[0], [as_tokens(o) for o in outputs[1]]) < TOL
    models[0].eval()
    assert all(models[0].prompts_as_keys_only(i) for i in range(3))


def test_training_blocks_without_dropout_stay_fast():
    model = build_vpt(frozen_eval=False).train()
    assert model.vit.layers[0].training
    assert all(model.prompts_as_keys_only(i) for i in range(3))


def test_layer_norm_change_invalidates_cache():
    """The prompts' keys come from LN1(P): LN1 is one of their sources."""
    model = build_vpt()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model(images)
        model.vit.layers[1].ln1.weight.mul_(2)
        after = model(images)
        expected = plain_vpt(model, images)
    assert max_diff(before, expected) > 1e-3
    assert max_diff(after, expected) < TOL


def test_registered_with_the_default_form():
    model = MODELS.build(dict(TINY, type='VPTViT', _scope_='mmseg',
                              num_prompts=2))
    assert model.prompt_form == 'auto'
