"""Draw training images for a measurement before training (BPT's
calibration, DA-VPT's first class-to-proxy mapping)."""
from typing import Iterator, List

import torch
from mmengine.dist import get_dist_info
from torch.utils.data import DataLoader, Subset


def check_positive_ints(owner: str, **values) -> None:
    """ValueError naming the first argument that is not an integer >= 1."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f'{owner}: {name} must be a positive integer, '
                             f'got {value!r}')


def rank_share(runner, num_images: int, owner: str) -> List[int]:
    """This rank's share of a fixed random subset of ``num_images``
    training images (the same subset for every run with this seed)."""
    dataset = runner.train_dataloader.dataset
    rank, world_size = get_dist_info()
    order = torch.randperm(
        len(dataset),
        generator=torch.Generator().manual_seed(runner.seed or 0))
    mine = order[:num_images][rank::world_size].tolist()
    if not mine:
        raise ValueError(
            f'{owner}: {min(num_images, len(dataset))} images for '
            f'{world_size} ranks leave rank {rank} none; use num_images >= '
            'the world size')
    return mine


def preprocessed_batches(runner, model, indices: List[int],
                         batch_size: int) -> Iterator[dict]:
    """The images through the training pipeline and the model's data
    preprocessor (training=True, as training sees them), in batches:
    dicts of ``inputs`` and ``data_samples``. Loaded in this process; wrap
    the loop in ``preserved_rng_states`` to leave training's random streams
    alone."""
    loader = runner.train_dataloader
    subset = DataLoader(
        Subset(loader.dataset, indices),
        batch_size=batch_size,
        collate_fn=loader.collate_fn)
    for batch in subset:
        yield model.data_preprocessor(batch, training=True)
