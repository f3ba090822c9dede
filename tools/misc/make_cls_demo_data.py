"""Generate a small synthetic classification data set in the VTAB-1K and FGVC
layouts, for tests and a demo (no download needed).

Class c draws images of its own colour with stripes of its own orientation,
at random stripe frequency, phase, brightness and noise, so the classes are
learnable but the images differ. The files use the names of real tasks so
that the task table resolves them; only the first ``--num-classes`` labels
occur.

    python tools/misc/make_cls_demo_data.py data/demo \
        --vtab-tasks dtd --fgvc-tasks cub
    python tools/train.py configs/cvpt/vitb_vtab_fgvc.py --cfg-options \
        task=dtd vtab_root=data/demo/vtab-1k ...
"""
import argparse
import colorsys
import json
import os
import os.path as osp

import numpy as np
from PIL import Image

from mmseg_cvpt.datasets import get_task

# images per class in each split (VTAB-1K: train800 + val200 = train800val200)
DEFAULT_COUNTS = dict(train=12, val=6, test=12)


def make_image(label: int, num_classes: int, size: int,
               rng: np.random.Generator) -> np.ndarray:
    """One (size, size, 3) uint8 image of class ``label``."""
    hue = (label + rng.uniform(-0.15, 0.15)) / num_classes
    colour = np.array(colorsys.hsv_to_rgb(hue % 1., 0.8, 1.))
    angle = np.pi * (label % 4) / 4 + rng.normal(0, 0.1)
    y, x = np.mgrid[:size, :size] / size
    phase = rng.uniform(0, 2 * np.pi)
    stripes = np.sin(2 * np.pi * rng.uniform(2, 4) *
                     (x * np.cos(angle) + y * np.sin(angle)) + phase)
    image = colour * (0.6 + 0.3 * stripes[..., None]) * rng.uniform(0.7, 1.)
    image += rng.normal(0, 0.05, image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def write_split(root: str, img_dir: str, split: str, num_classes: int,
                per_class: int, size: int,
                rng: np.random.Generator) -> dict:
    """Write ``per_class`` images per class; return {relative path: label}
    with paths relative to ``root/img_dir``."""
    os.makedirs(osp.join(root, img_dir, split), exist_ok=True)
    annotations = {}
    for label in range(num_classes):
        for i in range(per_class):
            path = f'{split}/{label:03d}_{i:04d}.png'
            Image.fromarray(make_image(label, num_classes, size, rng)).save(
                osp.join(root, img_dir, path))
            annotations[path] = label
    return annotations


def make_vtab(root: str, num_classes: int, counts: dict, size: int,
              rng: np.random.Generator) -> None:
    """train800.txt, val200.txt, train800val200.txt, test.txt + images/."""
    splits = dict(
        train800=write_split(root, 'images', 'train', num_classes,
                             counts['train'], size, rng),
        val200=write_split(root, 'images', 'val', num_classes,
                           counts['val'], size, rng),
        test=write_split(root, 'images', 'test', num_classes, counts['test'],
                         size, rng))
    splits['train800val200'] = {**splits['train800'], **splits['val200']}
    for name, annotations in splits.items():
        with open(osp.join(root, f'{name}.txt'), 'w') as f:
            f.writelines(f'images/{path} {label}\n'
                         for path, label in annotations.items())


def make_fgvc(root: str, img_dir: str, num_classes: int, counts: dict,
              size: int, rng: np.random.Generator) -> None:
    """train.json, val.json, test.json + the task's image folder."""
    for split in ('train', 'val', 'test'):
        annotations = write_split(root, img_dir, split, num_classes,
                                  counts[split], size, rng)
        with open(osp.join(root, f'{split}.json'), 'w') as f:
            json.dump(annotations, f, indent=0)


def make_demo_data(out_dir: str,
                   vtab_tasks=('dtd', ),
                   fgvc_tasks=('cub', ),
                   num_classes: int = 4,
                   size: int = 32,
                   counts: dict = DEFAULT_COUNTS,
                   seed: int = 0) -> None:
    """Write ``out_dir/vtab-1k/<task>`` and ``out_dir/fgvc/<folder>``."""
    rng = np.random.default_rng(seed)
    for name in vtab_tasks:
        task = get_task(name)
        make_vtab(
            osp.join(out_dir, 'vtab-1k', task.folder),
            min(num_classes, task.num_classes), counts, size, rng)
    for name in fgvc_tasks:
        task = get_task(name)
        make_fgvc(
            osp.join(out_dir, 'fgvc', task.folder), task.img_dir,
            min(num_classes, task.num_classes), counts, size, rng)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out_dir', help='writes vtab-1k/ and fgvc/ here')
    parser.add_argument('--vtab-tasks', nargs='*', default=['dtd'])
    parser.add_argument('--fgvc-tasks', nargs='*', default=['cub'])
    parser.add_argument('--num-classes', type=int, default=4)
    parser.add_argument('--size', type=int, default=32, help='image size')
    for split, count in DEFAULT_COUNTS.items():
        parser.add_argument(
            f'--{split}', type=int, default=count,
            help=f'images per class in the {split} split')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def main():
    args = parse_args()
    make_demo_data(
        args.out_dir, args.vtab_tasks, args.fgvc_tasks, args.num_classes,
        args.size, {split: getattr(args, split)
                    for split in DEFAULT_COUNTS}, args.seed)


if __name__ == '__main__':
    main()
