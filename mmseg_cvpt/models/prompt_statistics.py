"""What the prompts meet inside attention, measured on the prompt-free model
(BPT: "Attention to the Burstiness in Visual Prompt Tuning", ICCV 2025).

For a prompted layer l, every token u that queries its prompts (the
backbone's ``block_without_prompts``) meets a prompt p through the
attention logit z^T p with z = W_k^T (W_q u + b_q) (``query_key_vectors``
of the backbone's ``prompt_attention``). The statistics

    S_l = mean over the query tokens of z z^T      (D x D, float64)

calibrate BPT's whitening prompt providers (``set_statistics``):
``calibrate_prompts(backbone, batches)``.
"""
from typing import Iterable, Iterator, Tuple

import torch
from mmengine.dist import all_reduce
from torch import Tensor, nn

from .attention import query_key_vectors


def prompt_query_vectors(backbone: nn.Module,
                         images: Tensor) -> Iterator[Tuple[int, Tensor]]:
    """``(l, z)`` for each prompted layer l, in the prompt-free model: the
    vectors z of every token (class token and patches of every image) that
    queries layer l's prompts, as a (tokens, D) tensor."""
    for index, tokens, queries in backbone.prompt_free_layers(images):
        attention = backbone.prompt_attention(index, tokens)
        yield index, query_key_vectors(attention, queries).flatten(0, -2)


def prompt_query_moments(backbone: nn.Module,
                         images: Tensor) -> Tuple[Tensor, int]:
    """``(sum over tokens of z z^T (L, D, D) in float64, token count)``
    for a batch of images (B, 3, H, W), in eval mode and float32 (outside
    any autocast)."""
    sums = []
    with backbone.evaluating(), torch.autocast(images.device.type,
                                               enabled=False):
        for _, vectors in prompt_query_vectors(backbone, images):
            vectors = vectors.double()
            sums.append(vectors.mT @ vectors)
    return torch.stack(sums), vectors.shape[0]


def prompt_query_statistics(backbone: nn.Module, images: Tensor) -> Tensor:
    """S_l = mean over the query tokens of z z^T, (L, D, D) float64."""
    sums, count = prompt_query_moments(backbone, images)
    return sums / count


def calibrated_provider(backbone: nn.Module) -> nn.Module:
    """The backbone's prompt provider, which must be one calibrated from
    the statistics (has ``set_statistics``)."""
    provider = backbone.prompts
    if not hasattr(provider, 'set_statistics'):
        raise TypeError(
            'calibration needs a whitening prompt provider, '
            "prompt_cfg=dict(type='WhitenedPrompts' or 'BilinearPrompts'"
            f', ...); this backbone has {type(provider).__name__}')
    return provider


def calibrate_prompts(backbone: nn.Module,
                      batches: Iterable[Tensor]) -> Tuple[Tensor, int]:
    """Measure S over image batches and hand it to the prompt provider.

    S is the token-count weighted mean of every batch's statistics; in a
    distributed run the sums and counts of all ranks are added first
    (every rank must call this), so that every rank ends with the same
    matrices. Returns S (L, D, D), float64, and the number of query
    tokens it averages (all ranks).
    """
    provider = calibrated_provider(backbone)
    total, count = 0., 0
    for images in batches:
        sums, num_tokens = prompt_query_moments(backbone, images)
        total, count = total + sums, count + num_tokens
    if isinstance(total, float):
        raise ValueError('calibrate_prompts got no image batches')
    count = torch.tensor(float(count), dtype=torch.float64)
    all_reduce(total)  # in place; nothing without a process group
    all_reduce(count)
    statistics = total / count
    provider.set_statistics(statistics)
    return statistics, int(count)
