"""Checks of a training config's inputs, with errors that say what to do.

The cheap checks (folders exist and hold files, images and annotations pair
up, local pretrained checkpoints exist) run before training starts; the full
reading of every file is ``tools/misc/check_dataset.py``.
"""
import inspect
import os.path as osp
from typing import Dict, Iterator, List, Optional, Tuple

from mmengine.config import Config
from mmengine.fileio import list_dir_or_file

from mmseg.registry import DATASETS
from ..listing import NUM_FILES_SHOWN, listed  # noqa: F401  (re-exported)
from .config import iter_dicts


def leaf_datasets(dataset_cfg: Optional[dict]) -> Iterator[dict]:
    """The dataset configs inside Concat / Repeat / MultiTarget wrappers
    (or itself)."""
    if dataset_cfg is None:
        return
    wrapped = list(dataset_cfg.get('datasets', []))  # ConcatDataset
    wrapped += list((dataset_cfg.get('targets') or {}).values())
    if 'dataset' in dataset_cfg:  # RepeatDataset and other wrappers
        wrapped.append(dataset_cfg['dataset'])
    if not wrapped:
        yield dataset_cfg
    for child in wrapped:
        yield from leaf_datasets(child)


def _folders(dataset_cfg: dict) -> List[str]:
    """The image / annotation folders a dataset config reads."""
    root = dataset_cfg.get('data_root') or ''
    prefix = dataset_cfg.get('data_prefix') or {}
    # mmseg: dict(img_path=..., seg_map_path=...); mmpretrain: a str or dict
    folders = list(prefix.values()) if isinstance(prefix, dict) else [prefix]
    paths = [
        osp.join(root, folder) for folder in folders
        if isinstance(folder, str) and folder
    ]
    return paths or ([root] if root else [])


def dataset_argument(dataset_cfg: dict, name: str):
    """An argument of a dataset config, or its class's default."""
    if name in dataset_cfg:
        return dataset_cfg[name]
    cls = DATASETS.get(dataset_cfg['type'])
    for klass in cls.__mro__:
        param = inspect.signature(klass.__init__).parameters.get(name)
        if param is not None:
            return param.default
    raise KeyError(f'{cls.__name__} has no argument {name!r}')


def _files(folder: str, suffix: str) -> Dict[str, str]:
    """Files below ``folder`` ending in ``suffix``: name without it -> path."""
    return {
        name[:-len(suffix)]: osp.join(folder, name)
        for name in list_dir_or_file(
            folder, list_dir=False, suffix=suffix, recursive=True)
    }


def segmentation_files(
        dataset_cfg: dict) -> Optional[Tuple[Dict[str, str], Dict[str, str]]]:
    """The images and annotations of an mmseg dataset that lists its folders.

    Returns ``(images, annotations)``, each a dict from the name without
    suffix to the path, as mmseg pairs them; None for datasets with an
    ``ann_file`` or without both folders.
    """
    prefix = dataset_cfg.get('data_prefix')
    if (not isinstance(prefix, dict) or dataset_cfg.get('ann_file')
            or not prefix.get('img_path') or not prefix.get('seg_map_path')):
        return None
    root = dataset_cfg.get('data_root') or ''
    return (_files(
        osp.join(root, prefix['img_path']),
        dataset_argument(dataset_cfg, 'img_suffix')),
            _files(
                osp.join(root, prefix['seg_map_path']),
                dataset_argument(dataset_cfg, 'seg_map_suffix')))


def unpaired_files(images: Dict[str, str],
                   annotations: Dict[str, str]) -> Tuple[List[str], List[str]]:
    """Images without an annotation, annotations without an image."""
    return ([path for name, path in images.items() if name not in annotations],
            [path for name, path in annotations.items() if name not in images])


def pairing_problems(images: Dict[str, str],
                     annotations: Dict[str, str]) -> List[str]:
    """:func:`unpaired_files` as problems naming the files."""
    lone_images, lone_annotations = unpaired_files(images, annotations)
    return [
        f'{len(files)} {what}: {listed(files)}'
        for files, what in ((lone_images, 'images without an annotation'),
                            (lone_annotations, 'annotations without an image'))
        if files
    ]


def folder_problems(dataset_cfg: dict, where: str) -> List[str]:
    """Missing or empty folders of a data set: nothing of it can be read.

    ``where`` names the config entry.
    """
    problems = []
    for folder in _folders(dataset_cfg):
        if not osp.isdir(folder):
            problems.append(
                f'Data set folder not found: {osp.abspath(folder)} (from '
                f'{where}). Put the data set there (ADE20K: the '
                'ADEChallengeData2016 folder, see docs/segmentation.md), or '
                f'point the config at it, e.g. --cfg-options '
                f'{where}.data_root=PATH')
        elif not any(list_dir_or_file(folder, list_dir=False,
                                      recursive=True)):
            problems.append(
                f'Data set folder is empty: {osp.abspath(folder)} (from '
                f'{where})')
    files = None if problems else segmentation_files(dataset_cfg)
    if files is not None and not files[0]:
        suffix = dataset_argument(dataset_cfg, 'img_suffix')
        problems.append(f'No images (*{suffix}) in the data set of {where}')
    return problems


def layout_problems(dataset_cfg: dict) -> List[str]:
    """What the data set's class finds wrong with its files before they
    are read (its ``layout_problems``, e.g. GTAV's unconverted label
    maps)."""
    dataset_type = dataset_cfg.get('type')
    cls = DATASETS.get(dataset_type) if isinstance(dataset_type, str) \
        else dataset_type
    check = getattr(cls, 'layout_problems', None)
    return check(dataset_cfg) if check is not None else []


def preparation_problems(dataset_cfg: dict, where: str) -> List[str]:
    """Why nothing of the data set can be read: its
    :func:`layout_problems` (a step of its preparation left out explains
    the rest), or else its :func:`folder_problems`."""
    layout = layout_problems(dataset_cfg)
    if layout:
        return [f'{problem} (in {where})' for problem in layout]
    return folder_problems(dataset_cfg, where)


def dataset_problems(dataset_cfg: dict, where: str) -> List[str]:
    """:func:`preparation_problems`, or else for segmentation data sets the
    images and annotations that do not pair up."""
    problems = preparation_problems(dataset_cfg, where)
    files = None if problems else segmentation_files(dataset_cfg)
    if files is None:
        return problems
    return [f'{problem} (in {where})' for problem in pairing_problems(*files)]


# config types with a checkpoint -> the option that sets it (our configs)
CHECKPOINT_OPTIONS = {
    'Pretrained': 'model.backbone.init_cfg.checkpoint=PATH',
    'TimmViT': 'model.backbone.vit.checkpoint=PATH',
}


def _local_checkpoints(cfg):
    """Yield ``(path, option)`` of the local checkpoints that ``Pretrained``
    init configs and timm ViTs name."""
    for part in iter_dicts(cfg):
        checkpoint = part.get('checkpoint')
        if (part.get('type') in CHECKPOINT_OPTIONS
                and isinstance(checkpoint, str)
                and '://' not in checkpoint):  # URLs are fetched on demand
            yield checkpoint, CHECKPOINT_OPTIONS[part['type']]


def check_train_inputs(cfg: Config) -> None:
    """Fail early, and clearly, when training data or weights are missing.

    Checks the training and validation data sets (:func:`dataset_problems`)
    and the local checkpoints of ``Pretrained`` initialisations, and reports
    every problem at once, each with the path and the setting to change.
    Cheap enough to run before the Runner is built.

    Raises:
        FileNotFoundError: listing the problems.
    """
    problems = []
    for loader in ('train_dataloader', 'val_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        for leaf in leaf_datasets(dataset):
            problems += dataset_problems(leaf, f'{loader}.dataset')
    for ckpt, option in _local_checkpoints(cfg.get('model')):
        if not osp.isfile(ckpt):
            problems.append(
                f'Pretrained checkpoint not found: {osp.abspath(ckpt)}. '
                'Get (and for mmseg\'s ViT convert) the ViT weights as '
                'described in docs/pretrained.md, or pass --cfg-options '
                f'{option}')
    if problems:
        raise FileNotFoundError('Training cannot start:\n' +
                                '\n'.join(f'  - {p}' for p in problems))
