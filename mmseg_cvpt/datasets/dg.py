"""GTAV and Mapillary Vistas v1.2 as Cityscapes' 19 classes, for domain-
generalised segmentation as Rein trains and tests it (GTAV -> Cityscapes,
BDD100K, Mapillary): the dataset classes, the label tables (the
converters' file handling: :mod:`.conversion`) and
:class:`MultiTargetDataset`, the target data sets of one test. Cityscapes
and BDD100K (already in the 19 train ids) are mmseg's
``CityscapesDataset`` / ``BDD100KDataset``.
"""
import os
import os.path as osp
from typing import Dict, List

import numpy as np
from mmengine.dataset import ConcatDataset
from mmseg.datasets import (BaseSegDataset, CityscapesDataset,
                            MapillaryDataset_v1)
from mmseg.registry import DATASETS

from ..listing import listed

IGNORE_INDEX = 255
CITYSCAPES_CLASSES = CityscapesDataset.METAINFO['classes']
#: Mapillary Vistas v1.2's 66 classes, in the order of their label indices
MAPILLARY_V12_CLASSES = MapillaryDataset_v1.METAINFO['classes']

#: Cityscapes label id -> train id (cityscapesscripts' helpers/labels.py,
#: Rein's tools/convert_datasets/gta.py); every other id is ignored
LABEL_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18
}

#: Mapillary v1.2 class -> Cityscapes class: the rules of Rein's
#: tools/convert_datasets/mapillary2cityscape.py applied to v1.2's classes;
#: the other 32 classes are ignored
MAPILLARY_TO_CITYSCAPES = {
    'Road': 'road', 'Bike Lane': 'road', 'Crosswalk - Plain': 'road',
    'Parking': 'road', 'Service Lane': 'road',
    'Lane Marking - Crosswalk': 'road', 'Lane Marking - General': 'road',
    'Sidewalk': 'sidewalk', 'Curb': 'sidewalk', 'Curb Cut': 'sidewalk',
    'Pedestrian Area': 'sidewalk', 'Building': 'building', 'Wall': 'wall',
    'Fence': 'fence', 'Pole': 'pole', 'Utility Pole': 'pole',
    'Street Light': 'pole', 'Traffic Light': 'traffic light',
    'Traffic Sign (Front)': 'traffic sign',
    'Traffic Sign (Back)': 'traffic sign',
    'Traffic Sign Frame': 'traffic sign', 'Vegetation': 'vegetation',
    'Terrain': 'terrain', 'Sky': 'sky', 'Person': 'person',
    'Bicyclist': 'rider', 'Motorcyclist': 'rider', 'Other Rider': 'rider',
    'Car': 'car', 'Truck': 'truck', 'Bus': 'bus', 'On Rails': 'train',
    'Motorcycle': 'motorcycle', 'Bicycle': 'bicycle'
}


def lookup_table(mapping: Dict[int, int]) -> np.ndarray:
    """A uint8 table of the 256 input values: ``mapping``, else ignore."""
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    table[list(mapping)] = list(mapping.values())
    return table


GTAV_TABLE = lookup_table(LABEL_ID_TO_TRAIN_ID)
MAPILLARY_TABLE = lookup_table({
    MAPILLARY_V12_CLASSES.index(mapillary): CITYSCAPES_CLASSES.index(city)
    for mapillary, city in MAPILLARY_TO_CITYSCAPES.items()
})


@DATASETS.register_module()
class GTAVDataset(BaseSegDataset):
    """GTAV: ``images/NNNNN.png`` and, from tools/dataset_converters/gta.py,
    ``labels/NNNNN_labelTrainIds.png`` (Cityscapes' 19 train ids)."""
    METAINFO = CityscapesDataset.METAINFO

    def __init__(self,
                 img_suffix='.png',
                 seg_map_suffix='_labelTrainIds.png',
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

    @staticmethod
    def layout_problems(dataset_cfg: dict) -> List[str]:
        """GTAV label maps without their train-id map (GTAV's labels hold
        Cityscapes label ids, which tools/dataset_converters/gta.py turns
        into the 19 train ids this data set reads)."""
        root = dataset_cfg.get('data_root') or ''
        folder = osp.join(root, (dataset_cfg.get('data_prefix') or {}).get(
            'seg_map_path', ''))
        suffix = dataset_cfg.get('seg_map_suffix', '_labelTrainIds.png')
        if not osp.isdir(folder):
            return []
        names = set(os.listdir(folder))
        unconverted = [
            osp.join(folder, name) for name in names
            if name.endswith('.png') and not name.endswith(suffix)
            and name[:-len('.png')] + suffix not in names]
        if not unconverted:
            return []
        return [f'{len(unconverted)} GTAV label maps not converted to train '
                f'ids (no *{suffix} beside them): {listed(unconverted)}. Run '
                'python tools/dataset_converters/gta.py '
                f'{osp.abspath(root or ".")}']


@DATASETS.register_module()
class MapillaryCityscapesDataset(BaseSegDataset):
    """Mapillary Vistas v1.2's ``NAME.jpg`` with its 19-class ``NAME.png``
    from tools/dataset_converters/mapillary2cityscapes.py."""
    METAINFO = CityscapesDataset.METAINFO

    def __init__(self, img_suffix='.jpg', seg_map_suffix='.png',
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

    @staticmethod
    def layout_problems(dataset_cfg: dict) -> List[str]:
        """Mapillary's own download where the converted folders belong
        (``half/`` or ``cityscapes_trainIdLabel/`` not written yet)."""
        root = dataset_cfg.get('data_root') or ''
        prefix = dataset_cfg.get('data_prefix') or {}
        missing = [folder for folder in prefix.values()
                   if not osp.isdir(osp.join(root, folder))]
        downloaded = any(osp.isdir(osp.join(root, split, 'images'))
                         for split in ('training', 'validation'))
        if not (missing and downloaded):
            return []
        resize = ' --resize' if any(
            folder.startswith('half') for folder in missing) else ''
        return [f'Mapillary not converted to the 19 classes: no '
                f'{", ".join(osp.join(root, f) for f in missing)}. Run '
                'python tools/dataset_converters/mapillary2cityscapes.py '
                f'{osp.abspath(root or ".")}{resize}']


@DATASETS.register_module()
class MultiTargetDataset(ConcatDataset):
    """The target data sets of a domain-generalisation test, one after the
    other, each named: ``targets`` maps a name (``cityscapes``, ``bdd100k``,
    ``mapillary``) to a data set config. Their classes must agree. The
    metainfo adds ``targets``: name -> the folder of the target's images,
    by which ``MultiTargetIoUMetric`` tells the targets' samples apart.
    """

    def __init__(self, targets: Dict[str, dict], **kwargs) -> None:
        if not targets:
            raise ValueError('MultiTargetDataset needs at least one target: '
                             'targets=dict(name=dataset config, ...)')
        super().__init__(datasets=list(targets.values()), **kwargs)
        folders = {
            name: osp.abspath(dataset.data_prefix['img_path'])
            for name, dataset in zip(targets, self.datasets)
        }
        if len(set(folders.values())) < len(folders):
            raise ValueError(
                'MultiTargetDataset: targets share an image folder '
                f'({folders}); give each target its own data_root or '
                'data_prefix.img_path')
        self._metainfo = dict(self._metainfo, targets=folders)
