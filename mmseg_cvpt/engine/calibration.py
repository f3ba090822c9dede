"""Calibrate whitening prompt providers (BPT) on training images."""
import math
import random
from contextlib import contextmanager

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from torch.utils.data import DataLoader, Subset

from ..models.backbones import PromptedVisionTransformer


def find_prompted_backbone(model) -> PromptedVisionTransformer:
    """The prompted ViT inside a (wrapped) segmentor or classifier."""
    for module in model.modules():
        if isinstance(module, PromptedVisionTransformer):
            return module
    raise TypeError(
        f'{type(model).__name__} has no prompted backbone (VPTViT, CVPTViT)')


@contextmanager
def preserved_rng_states():
    """Run a block without moving torch's, numpy's or python's global
    random streams: training draws the same numbers as without it."""
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


@HOOKS.register_module()
class PromptCalibrationHook(Hook):
    """Measure the prompts' query statistics before training (BPT).

    Before the first iteration, when the prompt provider is not calibrated
    yet, draws ``num_images`` training images (a fixed random subset, split
    over the ranks, through the training pipeline and the model's data
    preprocessor), calls the backbone's ``calibrate_prompts`` (which adds
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
        for name, value in (('num_images', num_images),
                            ('batch_size', batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) \
                    or value < 1:
                raise ValueError(f'PromptCalibrationHook: {name} must be a '
                                 f'positive integer, got {value!r}')
        self.num_images = num_images
        self.batch_size = batch_size

    def before_train(self, runner) -> None:
        model = getattr(runner.model, 'module', runner.model)
        backbone = find_prompted_backbone(model)
        provider = backbone.calibrated_provider()
        if provider.is_calibrated:
            print_log(
                f'{type(provider).__name__}: calibrated matrices from the '
                'checkpoint are kept', logger='current')
            return
        images = self._my_images(runner)
        with preserved_rng_states():
            statistics, num_tokens = backbone.calibrate_prompts(
                self._image_batches(runner, model, images))
        self._log(provider, statistics, num_tokens)

    def _my_images(self, runner) -> list:
        """This rank's share of a fixed random subset of training images."""
        dataset = runner.train_dataloader.dataset
        rank, world_size = get_dist_info()
        order = torch.randperm(
            len(dataset),
            generator=torch.Generator().manual_seed(runner.seed or 0))
        mine = order[:self.num_images][rank::world_size].tolist()
        if not mine:
            raise ValueError(
                f'PromptCalibrationHook: {min(self.num_images, len(dataset))}'
                f' images for {world_size} ranks leave rank {rank} none; use '
                'num_images >= the world size')
        return mine

    def _image_batches(self, runner, model, indices):
        """The images through the training pipeline and the model's data
        preprocessor (training=True, as training sees them), in batches."""
        loader = runner.train_dataloader
        subset = DataLoader(
            Subset(loader.dataset, indices),
            batch_size=self.batch_size,
            collate_fn=loader.collate_fn)
        for batch in subset:
            yield model.data_preprocessor(batch, training=True)['inputs']

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
