"""Freezing: with ``frozen_eval=True`` the pretrained ViT draws no dropout or
drop-path masks in training, whatever of it trains (``also_train``)."""
import pytest
import torch

from test_fast_paths import build

# biases (bias tuning, VPT+Bias), DA-VPT+'s in-projection biases, norms
ALSO_TRAIN = [['bias'], ['in_proj_bias'], ['ln']]
RATES = dict(drop_path_rate=0.3, drop_rate=0.1, attn_drop_rate=0.1)


def max_diff(outputs, others):
    return max((a - b).abs().max().item() for a, b in zip(outputs, others))


def training_forward(model, seed):
    torch.manual_seed(seed)
    return model(torch.randn(2, 3, 32, 32, generator=torch.Generator()
                             .manual_seed(0)))


@pytest.mark.parametrize('also_train', ALSO_TRAIN)
@pytest.mark.parametrize('type_', ['VPTViT', 'CVPTViT'])
def test_trainable_vit_parameters_keep_the_vit_deterministic(
        type_, also_train):
    """Two training forwards under different seeds are identical (prompt
    dropout 0): no block of the frozen ViT drops out, and VPT keeps its
    fast form in every layer."""
    model = build(type_, num_prompts=4, also_train=also_train,
                  **RATES).train()
    trained = [n for n, p in model.named_parameters()
               if p.requires_grad and not n.startswith('prompts.')]
    assert trained and all(any(s in n for s in also_train) for n in trained)
    assert not any(m.training for m in model.vit.layers.modules())
    assert max_diff(training_forward(model, 1),
                    training_forward(model, 2)) == 0
    if type_ == 'VPTViT':
        assert all(model.prompts_as_keys_only(i) for i in range(3))


def test_without_frozen_eval_the_vit_drops_out():
    """The counter-check: frozen_eval=False trains the ViT's dropout."""
    model = build('VPTViT', num_prompts=4, frozen_eval=False,
                  **RATES).train()
    assert max_diff(training_forward(model, 1),
                    training_forward(model, 2)) > 1e-3


def test_frozen_exclude_is_the_older_name_of_also_train():
    old = build('CVPTViT', num_prompts=2, frozen_exclude=['bias'])
    new = build('CVPTViT', num_prompts=2, also_train=['bias'])
    assert old.trainable_patterns == new.trainable_patterns == ('bias', )
    with pytest.raises(ValueError, match='not both'):
        build('CVPTViT', num_prompts=2, also_train=['bias'],
              frozen_exclude=['ln'])
