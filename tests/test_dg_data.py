"""The data of domain-generalised segmentation (GTAV -> Cityscapes, BDD100K,
Mapillary): the converters' train ids, pixel for pixel, their resumption
and their refusal of partial downloads; GTAV's and Mapillary's datasets."""
import os
import os.path as osp
import re
import shutil

import numpy as np
import pytest
from mmseg.datasets import CityscapesDataset
from mmseg.registry import DATASETS
from PIL import Image

from mmseg_cvpt.engine.cli import run_as_command
from tool_loading import ROOT, load_tool

gta = load_tool('dataset_converters/gta.py')
mapillary = load_tool('dataset_converters/mapillary2cityscapes.py')

CLASSES = CityscapesDataset.METAINFO['classes']
#: Cityscapes label id -> class (cityscapesscripts' helpers/labels.py)
CITYSCAPES_IDS = {
    7: 'road', 8: 'sidewalk', 11: 'building', 12: 'wall', 13: 'fence',
    17: 'pole', 19: 'traffic light', 20: 'traffic sign', 21: 'vegetation',
    22: 'terrain', 23: 'sky', 24: 'person', 25: 'rider', 26: 'car',
    27: 'truck', 28: 'bus', 31: 'train', 32: 'motorcycle', 33: 'bicycle'
}
#: Mapillary v1.2 class index -> Cityscapes class (Rein's
#: mapillary2cityscape.py on v1.2's config); the other 32 are ignored
MAPILLARY_INDICES = {
    2: 'sidewalk', 3: 'fence', 6: 'wall', 7: 'road', 8: 'road',
    9: 'sidewalk', 10: 'road', 11: 'sidewalk', 13: 'road', 14: 'road',
    15: 'sidewalk', 17: 'building', 19: 'person', 20: 'rider', 21: 'rider',
    22: 'rider', 23: 'road', 24: 'road', 27: 'sky', 29: 'terrain',
    30: 'vegetation', 44: 'pole', 45: 'pole', 46: 'traffic sign', 47: 'pole',
    48: 'traffic light', 49: 'traffic sign', 50: 'traffic sign',
    52: 'bicycle', 54: 'bus', 55: 'car', 57: 'motorcycle', 58: 'train',
    61: 'truck'
}
#: label ids 0-63: the 19 classes' and 45 ids outside the mapping
GTAV_IDS = np.arange(64, dtype=np.uint8).reshape(8, 8)
#: (name, label ids, palette PNG or 8-bit grey) of the GTAV scenes
GTAV_SCENES = (('00001', GTAV_IDS, 'P'), ('00002', GTAV_IDS.T, 'L'))
#: Mapillary v1.2's 66 class indices, a 2x2 block each (halving keeps them)
MAPILLARY_BLOCKS = np.arange(66, dtype=np.uint8).reshape(6, 11)
#: split -> (Rein's name of the split, scene name, class indices)
MAPILLARY_SCENES = {
    'training': ('train', 'train_a', MAPILLARY_BLOCKS[::-1]),
    'validation': ('val', 'val_a', MAPILLARY_BLOCKS)
}
ALL_TRAIN_IDS = set(range(19)) | {255}


def train_ids(values: np.ndarray, classes: dict) -> np.ndarray:
    """The expected train ids of ``values`` (ignored: 255)."""
    return np.array([[
        CLASSES.index(classes[value]) if value in classes else 255
        for value in row
    ] for row in values.tolist()], dtype=np.uint8)


def read(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == 'L'
        return np.asarray(image)


def save_label(path, values: np.ndarray, mode: str) -> None:
    """An 8-bit label map; a palette one with colours unlike its indices."""
    image = Image.fromarray(values)
    if mode == 'P':
        image.putpalette([(i * c) % 256 for i in range(256)
                          for c in (37, 91, 151)])
    os.makedirs(osp.dirname(path), exist_ok=True)
    image.save(path)


def save_image(path, width: int, height: int) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.new('RGB', (width, height), (90, 120, 150)).save(path)


@pytest.fixture
def gtav(tmp_path):
    """A GTAV root of two 8x8 scenes, labels as palette and grey PNGs."""
    for name, ids, mode in GTAV_SCENES:
        save_image(tmp_path / 'images' / f'{name}.png', 8, 8)
        save_label(tmp_path / 'labels' / f'{name}.png', ids, mode)
    return tmp_path


def mapillary_root(root, labels: str):
    """A Mapillary root of a 22x12 scene a split, the labels in
    SPLIT/``labels``."""
    for split, (_, name, blocks) in MAPILLARY_SCENES.items():
        save_image(root / split / 'images' / f'{name}.jpg', 22, 12)
        save_label(root / split / labels / f'{name}.png',
                   np.kron(blocks, np.ones((2, 2), np.uint8)), 'P')
    return root


@pytest.fixture
def vistas(tmp_path):
    return mapillary_root(tmp_path, 'labels')


def gtav_outputs(root) -> list:
    return [root / 'labels' / f'{name}_labelTrainIds.png'
            for name, _, _ in GTAV_SCENES]


def mapillary_outputs(root) -> list:
    converted = [
        root / 'cityscapes_trainIdLabel' / short / 'label' / f'{name}.png'
        for short, name, _ in MAPILLARY_SCENES.values()
    ]
    return converted + [root / 'half' / 'val_img' / 'val_a.jpg',
                        root / 'half' / 'val_label' / 'val_a.png']


def mtimes(paths) -> list:
    return [os.stat(path).st_mtime_ns for path in paths]


def skip_counts(output: str) -> list:
    return [int(n) for n in re.findall(r'skipped (\d+)', output)]


def test_gtav_train_ids(gtav):
    assert gta.main([str(gtav), '--nproc', '2']) == 0
    for (_, ids, _), output in zip(GTAV_SCENES, gtav_outputs(gtav)):
        converted = read(output)
        np.testing.assert_array_equal(converted,
                                      train_ids(ids, CITYSCAPES_IDS))
        assert set(np.unique(converted)) == ALL_TRAIN_IDS
    assert sorted(os.listdir(gtav / 'labels')) == [
        '00001.png', '00001_labelTrainIds.png', '00002.png',
        '00002_labelTrainIds.png'
    ]  # no temporary files left


def test_gtav_second_run_skips(gtav, capsys):
    outputs = gtav_outputs(gtav)
    gta.main([str(gtav), '--nproc', '1'])
    first = mtimes(outputs)
    capsys.readouterr()
    gta.main([str(gtav), '--nproc', '1'])
    assert skip_counts(capsys.readouterr().out) == [2]
    assert mtimes(outputs) == first
    os.utime(outputs[1], ns=(first[1] - 10**9, ) * 2)  # older than source
    gta.main([str(gtav), '--nproc', '1'])
    assert skip_counts(capsys.readouterr().out) == [1]
    assert mtimes(outputs)[0] == first[0]
    assert mtimes(outputs)[1] > first[1] - 10**9


@pytest.mark.parametrize('missing, message', [
    ('labels', r'labels: no such folder; unpack all ten parts'),
    ('labels/00002.png',
     r'images without a label map \(1\): \S+/images/00002\.png;'),
    ('images/00001.png',
     r'label maps without an image \(1\): \S+/labels/00001\.png;'),
])
def test_gtav_partial_download_refused(gtav, missing, message):
    path = gtav / missing
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(FileNotFoundError, match=message):
        gta.main([str(gtav), '--nproc', '1'])
    assert not any(map(osp.exists, gtav_outputs(gtav)))


def test_gtav_command_exit_status(gtav, capsys):
    (gtav / 'labels' / '00002.png').unlink()
    script = osp.join(ROOT, 'tools', 'dataset_converters', 'gta.py')
    assert run_as_command([script, str(gtav)]) == 2
    error = capsys.readouterr().err.splitlines()
    assert len(error) == 1 and '00002.png' in error[0]


def test_gtav_colour_label_map_refused(gtav):
    Image.new('RGB', (8, 8)).save(gtav / 'labels' / '00002.png')
    with pytest.raises(ValueError, match=r"00002\.png: .* mode 'RGB'"):
        gta.main([str(gtav), '--nproc', '1'])


@pytest.mark.parametrize('labels', ['labels', 'v1.2/labels'])
def test_mapillary_train_ids(tmp_path, labels):
    root = mapillary_root(tmp_path, labels)
    assert mapillary.main([str(root), '--nproc', '1', '--resize']) == 0
    for short, name, blocks in MAPILLARY_SCENES.values():
        converted = read(root / 'cityscapes_trainIdLabel' / short / 'label' /
                         f'{name}.png')
        expected = train_ids(blocks, MAPILLARY_INDICES)
        np.testing.assert_array_equal(
            converted, np.kron(expected, np.ones((2, 2), np.uint8)))
        assert set(np.unique(converted)) == ALL_TRAIN_IDS
    np.testing.assert_array_equal(
        read(root / 'half' / 'val_label' / 'val_a.png'),
        train_ids(MAPILLARY_BLOCKS, MAPILLARY_INDICES))
    with Image.open(root / 'half' / 'val_img' / 'val_a.jpg') as half:
        assert half.size == (11, 6)


def test_mapillary_second_run_skips(vistas, capsys):
    outputs = mapillary_outputs(vistas)
    mapillary.main([str(vistas), '--nproc', '1', '--resize'])
    first = mtimes(outputs)
    capsys.readouterr()
    mapillary.main([str(vistas), '--nproc', '1', '--resize'])
    assert skip_counts(capsys.readouterr().out) == [1, 1, 1]
    assert mtimes(outputs) == first


@pytest.mark.parametrize('missing, message', [
    ('validation/labels', r'validation/labels: no such folder; unpack'),
    ('validation/labels/val_a.png',
     r'images without a label map \(1\): \S+/validation/images/val_a\.jpg;'),
])
def test_mapillary_partial_download_refused(vistas, missing, message):
    path = vistas / missing
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(FileNotFoundError, match=message):
        mapillary.main([str(vistas), '--nproc', '1'])
    assert not (vistas / 'cityscapes_trainIdLabel').exists()


def test_mapillary_v2_label_map_refused(vistas):
    save_label(vistas / 'validation' / 'labels' / 'val_a.png',
               np.full((12, 22), 100, np.uint8), 'P')
    with pytest.raises(ValueError, match=r'val_a\.png: class index 100'):
        mapillary.main([str(vistas), '--nproc', '1'])


def build(type_, root, images, labels, pipeline=()):
    return DATASETS.build(
        dict(type=type_, data_root=str(root),
             data_prefix=dict(img_path=images, seg_map_path=labels),
             pipeline=list(pipeline)))


def pairs(dataset) -> list:
    return [(info['img_path'], info['seg_map_path'])
            for info in map(dataset.get_data_info, range(len(dataset)))]


def test_gtav_dataset(gtav):
    gta.main([str(gtav), '--nproc', '1'])
    dataset = build('GTAVDataset', gtav, 'images', 'labels',
                    [dict(type='LoadAnnotations')])
    assert dataset.metainfo['classes'] == CLASSES
    assert pairs(dataset) == [
        (str(gtav / 'images' / f'{name}.png'),
         str(gtav / 'labels' / f'{name}_labelTrainIds.png'))
        for name, _, _ in GTAV_SCENES
    ]
    np.testing.assert_array_equal(dataset[0]['gt_seg_map'],
                                  train_ids(GTAV_IDS, CITYSCAPES_IDS))


@pytest.mark.parametrize('images, labels', [
    ('validation/images', 'cityscapes_trainIdLabel/val/label'),
    ('half/val_img', 'half/val_label'),
])
def test_mapillary_dataset(vistas, images, labels):
    mapillary.main([str(vistas), '--nproc', '1', '--resize'])
    dataset = build('MapillaryCityscapesDataset', vistas, images, labels)
    assert dataset.metainfo['classes'] == CLASSES
    assert pairs(dataset) == [(str(vistas / images / 'val_a.jpg'),
                               str(vistas / labels / 'val_a.png'))]
