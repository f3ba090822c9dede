"""Calibrate whitening prompt providers (BPT) on training images."""
import math

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ..models.backbones import find_prompted_backbone
from ..models.prompt_statistics import calibrate_prompts, calibrated_provider
from .loading import unwrap_model
from .rng import preserved_rng_states
from .training_images import (check_positive_ints, preprocessed_batches,
                              rank_share)


@HOOKS.register_module()
class PromptCalibrationHook(Hook):
    """Measure the prompts' query statistics before training (BPT).

    Before the first iteration, when the prompt provider is not calibrated
    yet, draws ``num_images`` training images (a fixed random subset, split
    over the ranks, through the training pipeline and the model's data
    preprocessor), calls ``calibrate_prompts`` (which adds
    the ranks' sums and counts, so every rank ends with the same matrices)
    and logs the layers, token count and condition numbers. A run resumed
    from, or initialised with, a calibrated checkpoint keeps its matrices.
    The global random streams are left as they were, so a calibrated run
    and its resumption draw the same numbers.

    Args:
        num_images (int): images to measure, over all ranks. Default 256.
        batch_size (int): images per forward. Default 16.
    """

    priority = 'LOW'

    def __init__(self, num_images: int = 256, batch_size: int = 16):
        check_positive_ints(
            type(self).__name__, num_images=num_images, batch_size=batch_size)
        self.num_images = num_images
        self.batch_size = batch_size

    def before_train(self, runner) -> None:
        model = unwrap_model(runner.model)
        backbone = find_prompted_backbone(model)
        provider = calibrated_provider(backbone)
        if provider.is_calibrated:
            print_log(
                f'{type(provider).__name__}: calibrated matrices from the '
                'checkpoint are kept', logger='current')
            return
        images = rank_share(runner, self.num_images, type(self).__name__)
        batches = preprocessed_batches(runner, model, images, self.batch_size)
        with preserved_rng_states():
            statistics, num_tokens = calibrate_prompts(
                backbone, (batch['inputs'] for batch in batches))
        self._log(provider, statistics, num_tokens)

    def _log(self, provider, statistics, num_tokens) -> None:
        eigenvalues = torch.linalg.eigvalsh(statistics)
        tiny = eigenvalues.new_tensor(torch.finfo(torch.float64).tiny)
        condition = eigenvalues[:, -1] / eigenvalues[:, 0].clamp_min(tiny)
        regularised = (eigenvalues[:, -1] + provider.eps * eigenvalues.mean(
            -1)) / (eigenvalues[:, 0].clamp_min(0) +
                    provider.eps * eigenvalues.mean(-1))
        print_log(
            f'PromptCalibrationHook: calibrated {type(provider).__name__} '
            f'of {statistics.shape[0]} layers on {num_tokens:,} query '
            'tokens; condition numbers of S per layer: '
            f'{format_list(condition)}; of S + eps: '
            f'{format_list(regularised)}',
            logger='current')


def format_list(values) -> str:
    return '[' + ', '.join(
        'inf' if math.isinf(v) else f'{v:.3g}' for v in values.tolist()) + ']'
