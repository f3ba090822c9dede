"""Generate the domain-generalisation demo: a synthetic source domain in
GTAV's layout and two shifted target domains in Cityscapes' and Mapillary's.

The scenes are those of the ADE20K demo (``make_ade20k_demo.py``: its ViT
was pretrained for them); its six classes stand for six of Cityscapes' 19
(wall, building, sky -> sky, floor -> road, tree -> vegetation, ceiling ->
terrain), its "other" objects are ignored. Each domain is written in its
data set's layout and label encoding::

    OUT/gtav/images/NNNNN.png
    OUT/gtav/labels/NNNNN.png                  Cityscapes label ids (GTAV's)
    OUT/cityscapes/leftImg8bit/val/demo/demo_NNNNNN_000019_leftImg8bit.png
    OUT/cityscapes/gtFine/val/demo/demo_NNNNNN_000019_gtFine_labelTrainIds.png
    OUT/mapillary/validation/images/NAME.jpg
    OUT/mapillary/validation/labels/NAME.png   Mapillary v1.2 class indices

The targets are the source's kind of scene under a shift of colour (the
cue the scenes' classes are told apart by): ``cityscapes`` overcast (lower
contrast, a blue cast), ``mapillary`` dusk (darker, a warm cast, more
noise) at twice the size. GTAV's and Mapillary's labels are then converted
as the real data sets' are::

    python tools/misc/make_dg_demo.py data/dg_demo
    python tools/dataset_converters/gta.py data/dg_demo/gtav
    python tools/dataset_converters/mapillary2cityscapes.py \\
        data/dg_demo/mapillary --resize
    python tools/train.py configs/baseline/mask2former_vittiny_gta2city_demo.py
"""
import argparse
import os
import os.path as osp
import sys
from typing import Callable, Dict

import cv2
import numpy as np

from mmseg_cvpt.datasets.dg import (CITYSCAPES_CLASSES, IGNORE_INDEX,
                                    LABEL_ID_TO_TRAIN_ID,
                                    MAPILLARY_TO_CITYSCAPES,
                                    MAPILLARY_V12_CLASSES, lookup_table)
from mmseg_cvpt.engine.cli import (add_debug_argument, int_at_least,
                                   positive_int, run_tool)

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from make_ade20k_demo import (BUILDING, CEILING, FLOOR, OTHER,  # noqa: E402
                              SKY, TREE, WALL, make_scene)

#: the class of Cityscapes' 19 that each demo class stands for
CITYSCAPES_CLASS = {WALL: 'wall', BUILDING: 'building', SKY: 'sky',
                    FLOOR: 'road', TREE: 'vegetation', CEILING: 'terrain'}


def encoding(value_of: Callable[[str], int], ignored: int) -> Dict[int, int]:
    """Demo class -> its label value in a layout (``value_of`` its
    Cityscapes class); the demo's "other" objects -> ``ignored``."""
    return {OTHER: ignored, **{demo: value_of(city)
                               for demo, city in CITYSCAPES_CLASS.items()}}


def label_id(city: str) -> int:
    """The Cityscapes label id (GTAV's labels) of a class."""
    train_id = CITYSCAPES_CLASSES.index(city)
    return next(label for label, train in LABEL_ID_TO_TRAIN_ID.items()
                if train == train_id)


def mapillary_index(city: str) -> int:
    """The first Mapillary v1.2 class that the converter maps to ``city``."""
    return MAPILLARY_V12_CLASSES.index(next(
        mapillary for mapillary, mapped in MAPILLARY_TO_CITYSCAPES.items()
        if mapped == city))


#: the encodings the converters read (tools/dataset_converters/) and the
#: train ids they write: GTAV's label id 0 (unlabeled) and Mapillary's
#: Unlabeled are ignored
LABEL_IDS = encoding(label_id, 0)
MAPILLARY_IDS = encoding(mapillary_index,
                         MAPILLARY_V12_CLASSES.index('Unlabeled'))
TRAIN_IDS = encoding(CITYSCAPES_CLASSES.index, IGNORE_INDEX)

#: target -> (contrast, colour gain per RGB channel, brightness offset,
#: noise sigma)
SHIFTS = {
    'cityscapes': (0.75, (0.92, 0.97, 1.12), 30.0, 6.0),
    'mapillary': (0.85, (1.12, 0.95, 0.80), -25.0, 12.0),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate the synthetic domain-generalisation demo')
    parser.add_argument('out_dir', help='data root to create')
    parser.add_argument('--num-train', type=positive_int, default=300,
                        help='source (GTAV-layout) scenes')
    parser.add_argument('--num-val', type=positive_int, default=100,
                        help='scenes of each target')
    parser.add_argument('--size', type=int_at_least(16), default=64,
                        help='image side')
    add_debug_argument(parser)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def shifted(image: np.ndarray, target: str, rng) -> np.ndarray:
    """``image`` (RGB uint8) under the target's shift of colour."""
    contrast, gain, offset, noise = SHIFTS[target]
    mean = image.reshape(-1, 3).mean(0)
    out = (image - mean) * contrast + mean
    out = out * np.asarray(gain) + offset
    out += rng.normal(0, noise, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def write(path: str, array: np.ndarray, rgb: bool = False) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, array[..., ::-1] if rgb else array,
                       [cv2.IMWRITE_JPEG_QUALITY, 95]
                       if path.endswith('.jpg') else []):
        raise OSError(f'{path}: could not be written')


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    out = args.out_dir
    for i in range(args.num_train):
        image, label, _ = make_scene(args.size, rng)
        write(osp.join(out, 'gtav', 'images', f'{i:05d}.png'), image, True)
        write(osp.join(out, 'gtav', 'labels', f'{i:05d}.png'),
              lookup_table(LABEL_IDS)[label])
    for i in range(args.num_val):
        image, label, _ = make_scene(args.size, rng)
        name = f'demo_{i:06d}_000019'
        city = osp.join(out, 'cityscapes')
        write(osp.join(city, 'leftImg8bit', 'val', 'demo',
                       f'{name}_leftImg8bit.png'),
              shifted(image, 'cityscapes', rng), True)
        write(osp.join(city, 'gtFine', 'val', 'demo',
                       f'{name}_gtFine_labelTrainIds.png'),
              lookup_table(TRAIN_IDS)[label])
    for i in range(args.num_val):
        image, label, _ = make_scene(2 * args.size, rng)
        split = osp.join(out, 'mapillary', 'validation')
        write(osp.join(split, 'images', f'demo{i:05d}.jpg'),
              shifted(image, 'mapillary', rng), True)
        write(osp.join(split, 'labels', f'demo{i:05d}.png'),
              lookup_table(MAPILLARY_IDS)[label])
    print(f'Wrote {args.num_train} source scenes (GTAV layout) and '
          f'{args.num_val} scenes of each target (Cityscapes, Mapillary '
          f'layouts) to {out}')


if __name__ == '__main__':
    run_tool(main)
