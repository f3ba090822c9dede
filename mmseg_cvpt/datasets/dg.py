"""GTAV and Mapillary Vistas v1.2 as Cityscapes' 19 classes, for domain-
generalised segmentation as Rein trains and tests it (GTAV -> Cityscapes,
BDD100K, Mapillary): the dataset classes and the label tables (the
converters' file handling: :mod:`.conversion`). Cityscapes and BDD100K
(already in the 19 train ids) are mmseg's ``CityscapesDataset`` /
``BDD100KDataset``.
"""
from typing import Dict

import numpy as np
from mmseg.datasets import (BaseSegDataset, CityscapesDataset,
                            MapillaryDataset_v1)
from mmseg.registry import DATASETS

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


@DATASETS.register_module()
class MapillaryCityscapesDataset(BaseSegDataset):
    """Mapillary Vistas v1.2's ``NAME.jpg`` with its 19-class ``NAME.png``
    from tools/dataset_converters/mapillary2cityscapes.py."""
    METAINFO = CityscapesDataset.METAINFO

    def __init__(self, img_suffix='.jpg', seg_map_suffix='.png',
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)
