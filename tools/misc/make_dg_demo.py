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

import cv2
import numpy as np

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from make_ade20k_demo import (BUILDING, CEILING, FLOOR, OTHER,  # noqa: E402
                              SKY, TREE, WALL, make_scene)

#: the demo's classes as Cityscapes label ids (GTAV's labels)
LABEL_IDS = {WALL: 12, BUILDING: 11, SKY: 23, FLOOR: 7, TREE: 21,
             CEILING: 22, OTHER: 0}
#: ... as Cityscapes train ids (255: ignored)
TRAIN_IDS = {WALL: 3, BUILDING: 2, SKY: 10, FLOOR: 0, TREE: 8, CEILING: 9,
             OTHER: 255}
#: ... as Mapillary Vistas v1.2 class indices (65: Unlabeled)
MAPILLARY_IDS = {WALL: 6, BUILDING: 17, SKY: 27, FLOOR: 13, TREE: 30,
                 CEILING: 29, OTHER: 65}

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
    parser.add_argument('--num-train', type=int, default=300,
                        help='source (GTAV-layout) scenes')
    parser.add_argument('--num-val', type=int, default=100,
                        help='scenes of each target')
    parser.add_argument('--size', type=int, default=64, help='image side')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def encode(label: np.ndarray, ids: dict) -> np.ndarray:
    table = np.zeros(256, np.uint8)
    for demo_class, value in ids.items():
        table[demo_class] = value
    return table[label]


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
    cv2.imwrite(path, array[..., ::-1] if rgb else array,
                [cv2.IMWRITE_JPEG_QUALITY, 95] if path.endswith('.jpg')
                else [])


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    out = args.out_dir
    for i in range(args.num_train):
        image, label, _ = make_scene(args.size, rng)
        write(osp.join(out, 'gtav', 'images', f'{i:05d}.png'), image, True)
        write(osp.join(out, 'gtav', 'labels', f'{i:05d}.png'),
              encode(label, LABEL_IDS))
    for i in range(args.num_val):
        image, label, _ = make_scene(args.size, rng)
        name = f'demo_{i:06d}_000019'
        city = osp.join(out, 'cityscapes')
        write(osp.join(city, 'leftImg8bit', 'val', 'demo',
                       f'{name}_leftImg8bit.png'),
              shifted(image, 'cityscapes', rng), True)
        write(osp.join(city, 'gtFine', 'val', 'demo',
                       f'{name}_gtFine_labelTrainIds.png'),
              encode(label, TRAIN_IDS))
    for i in range(args.num_val):
        image, label, _ = make_scene(2 * args.size, rng)
        split = osp.join(out, 'mapillary', 'validation')
        write(osp.join(split, 'images', f'demo{i:05d}.jpg'),
              shifted(image, 'mapillary', rng), True)
        write(osp.join(split, 'labels', f'demo{i:05d}.png'),
              encode(label, MAPILLARY_IDS))
    print(f'Wrote {args.num_train} source scenes (GTAV layout) and '
          f'{args.num_val} scenes of each target (Cityscapes, Mapillary '
          f'layouts) to {out}')


if __name__ == '__main__':
    main()
