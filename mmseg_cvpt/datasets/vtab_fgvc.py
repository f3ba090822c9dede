"""VTAB-1K and FGVC in the layouts of the VPT / NOAH releases."""
import json
import os.path as osp
from typing import Dict, List, Optional

from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS


def _check_file(path: str, dataset: str) -> str:
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{dataset} annotation file not found: {path}')
    return path


def _check_label(label: int, num_classes: Optional[int], where: str) -> int:
    if num_classes is not None and not 0 <= label < num_classes:
        raise ValueError(f'label {label} out of range [0, {num_classes}) '
                         f'at {where}')
    return label


@DATASETS.register_module()
class VTAB1k(BaseDataset):
    """One VTAB-1K task, laid out as in the VPT / NOAH releases::

        data_root/                  # e.g. data/vtab-1k/dtd
            train800.txt            # "relative/path label" per line,
            val200.txt              #   paths relative to data_root
            train800val200.txt
            test.txt
            images/...

    Args:
        data_root (str): The task's folder.
        split (str): 'train800', 'val200', 'train800val200' or 'test'.
        num_classes (int, optional): If given, labels are checked to lie in
            ``[0, num_classes)``.
        **kwargs: Other arguments of :class:`mmpretrain.datasets.BaseDataset`
            (``pipeline``, ``test_mode``, ...).
    """
    SPLITS = ('train800', 'val200', 'train800val200', 'test')

    def __init__(self,
                 data_root: str,
                 split: str = 'train800val200',
                 num_classes: Optional[int] = None,
                 **kwargs):
        if split not in self.SPLITS:
            raise ValueError(f'VTAB-1K split must be one of {self.SPLITS}, '
                             f'got {split!r}')
        self.split = split
        self.num_classes = num_classes
        super().__init__(
            ann_file=f'{split}.txt', data_root=data_root, **kwargs)

    def load_data_list(self) -> List[dict]:
        data_list = []
        with open(_check_file(self.ann_file, 'VTAB-1K')) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f'{self.ann_file}:{lineno}'
                try:
                    path, label = line.rsplit(maxsplit=1)
                    label = int(label)
                except ValueError:
                    raise ValueError(f'expected "relative/path label" at '
                                     f'{where}, got {line.strip()!r}')
                data_list.append(
                    dict(
                        img_path=osp.join(self.img_prefix, path),
                        gt_label=_check_label(label, self.num_classes,
                                              where)))
        return data_list


@DATASETS.register_module()
class FGVC(BaseDataset):
    """One FGVC data set, laid out as in VPT's release::

        data_root/                  # e.g. data/fgvc/CUB_200_2011
            train.json              # {"relative/image/path": label, ...}
            val.json                #   paths relative to img_dir
            test.json
            <img_dir>/...           # e.g. images/ (CUB), Images/ (dogs)

    Labels are mapped to contiguous ids ``0..C-1`` in sorted order over all
    of the task's json files, so every split uses the same mapping (VPT maps
    each split on its own).

    Args:
        data_root (str): The data set's folder.
        split (str): 'train', 'val', 'trainval' (train + val) or 'test'.
        img_dir (str): The image folder relative to ``data_root``.
        num_classes (int, optional): If given, there may be no more distinct
            labels than this.
        **kwargs: Other arguments of :class:`mmpretrain.datasets.BaseDataset`.
    """
    SPLITS = dict(
        train=('train', ), val=('val', ), trainval=('train', 'val'),
        test=('test', ))
    ANN_FILES = ('train', 'val', 'test')

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 img_dir: str = '',
                 num_classes: Optional[int] = None,
                 **kwargs):
        if split not in self.SPLITS:
            raise ValueError(f'FGVC split must be one of '
                             f'{tuple(self.SPLITS)}, got {split!r}')
        self.split = split
        self.num_classes = num_classes
        super().__init__(
            ann_file='', data_root=data_root, data_prefix=img_dir, **kwargs)

    def _ann_path(self, name: str) -> str:
        return osp.join(self.data_root, f'{name}.json')

    def _load(self, name: str) -> Dict[str, int]:
        path = _check_file(self._ann_path(name), 'FGVC')
        with open(path) as f:
            return {img: int(label) for img, label in json.load(f).items()}

    def load_data_list(self) -> List[dict]:
        used = {name: self._load(name) for name in self.SPLITS[self.split]}
        labels = set()
        for name in self.ANN_FILES:
            if name in used:
                labels.update(used[name].values())
            elif osp.isfile(self._ann_path(name)):
                labels.update(self._load(name).values())
        if self.num_classes is not None and len(labels) > self.num_classes:
            raise ValueError(f'{self.data_root}: {len(labels)} distinct '
                             f'labels in the json files, more than '
                             f'num_classes={self.num_classes}')
        label_ids = {label: i for i, label in enumerate(sorted(labels))}
        return [
            dict(
                img_path=osp.join(self.img_prefix, img),
                gt_label=label_ids[label]) for annotations in used.values()
            for img, label in annotations.items()
        ]
