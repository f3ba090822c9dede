"""Checks of a training config's inputs, with errors that say what to do."""
import os.path as osp

from mmengine.config import Config

from .config import iter_dicts


def _dataset_dirs(dataset_cfg):
    """Yield the image / annotation folders a dataset config reads."""
    if dataset_cfg is None:
        return
    for child in dataset_cfg.get('datasets', []):  # ConcatDataset
        yield from _dataset_dirs(child)
    if 'dataset' in dataset_cfg:  # RepeatDataset and other wrappers
        yield from _dataset_dirs(dataset_cfg['dataset'])
    root = dataset_cfg.get('data_root') or ''
    prefix = dataset_cfg.get('data_prefix') or {}
    # mmseg: dict(img_path=..., seg_map_path=...); mmpretrain: a str or dict
    folders = list(prefix.values()) if isinstance(prefix, dict) else [prefix]
    paths = [
        osp.join(root, folder) for folder in folders
        if isinstance(folder, str) and folder
    ]
    yield from paths or ([root] if root else [])


def _local_checkpoints(cfg):
    """Yield local checkpoint paths named by ``Pretrained`` init configs."""
    for init_cfg in iter_dicts(cfg):
        checkpoint = init_cfg.get('checkpoint')
        if (init_cfg.get('type') == 'Pretrained'
                and isinstance(checkpoint, str)
                and '://' not in checkpoint):  # URLs are fetched on demand
            yield checkpoint


def check_train_inputs(cfg: Config) -> None:
    """Fail early, and clearly, when training data or weights are missing.

    Checks the folders of the training and validation data sets and the
    local checkpoints of ``Pretrained`` initialisations, and names the
    expected path and the setting to change.

    Raises:
        FileNotFoundError: if one of them does not exist.
    """
    for loader in ('train_dataloader', 'val_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        for folder in _dataset_dirs(dataset):
            if not osp.isdir(folder):
                raise FileNotFoundError(
                    f'Data set folder not found: {osp.abspath(folder)} '
                    f'(from {loader}.dataset). Put the data set there '
                    '(ADE20K: the ADEChallengeData2016 folder, see '
                    'docs/segmentation.md), or point the config at it, e.g. '
                    f'--cfg-options {loader}.dataset.data_root=PATH')
    for ckpt in _local_checkpoints(cfg.get('model')):
        if not osp.isfile(ckpt):
            raise FileNotFoundError(
                f'Pretrained checkpoint not found: {osp.abspath(ckpt)}. '
                'Convert the ViT weights as described in docs/pretrained.md, '
                'or pass --cfg-options '
                'model.backbone.init_cfg.checkpoint=PATH')
