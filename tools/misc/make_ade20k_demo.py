"""Generate a small synthetic data set in the ADE20K layout.

The layout is the one of ``ADEChallengeData2016``::

    OUT/images/{training,validation}/*.jpg
    OUT/annotations/{training,validation}/*.png

Label 0 means "other" (ignored with ``reduce_zero_label=True``) and labels
1..6 are the first six ADE20K classes (wall, building, sky, floor, tree,
ceiling), so that a config can keep ``ADE20KDataset`` and select these six
classes through ``metainfo``; their ids then map to 0..5 unchanged.

The scenes have a learnable structure: indoor scenes (ceiling / wall / floor)
and outdoor scenes (sky / buildings and trees / floor) in random layouts,
with a few random "other" objects. The classes are told apart by their
colours, and every region is camouflaged by one of the textures that the
demo's ViT was pretrained to tell apart (``tools/misc/pretrain_tiny_vit.py``:
stripes, checkerboard, dots, rings at periods of 8-32 pixels), random in
kind, frequency and phase, drawn at high contrast (+-120 grey levels) along
a random colour direction. The pretraining made the ViT's features track
exactly these textures and ignore colour (its textures came in random
colours): here the textures tell nothing and the colour everything, so the
frozen features are not enough and adapting the ViT pays (measured in the
README: full fine-tuning beats head-only by more than the seed spread).

Like ADE20K it writes ``OUT/sceneCategories.txt``, one line per image of
both splits with its scene (``ADE_demo_training_00000 living_room``: the
indoor scenes are ``living_room``, the outdoor ones ``street``), which
DA-VPT's ``image_labels='scene'`` reads.

It also writes ``OUT/majority_baseline.json``: the mIoU on the validation
split of a predictor that outputs the most frequent training class
everywhere, the floor a trained model has to beat.

Example::

    python tools/misc/make_ade20k_demo.py data/ade20k_demo
"""
import argparse
import json
import os
import os.path as osp
import sys

import cv2
import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from synthetic_textures import BANDS, texture_masks  # noqa: E402

CLASSES = ('wall', 'building', 'sky', 'floor', 'tree', 'ceiling')
WALL, BUILDING, SKY, FLOOR, TREE, CEILING = range(1, len(CLASSES) + 1)
OTHER = 0
SCENES = {True: 'living_room', False: 'street'}  # indoor -> scene category
# Base colour of each class (RGB).
COLOURS = {
    WALL: (205, 170, 150),
    BUILDING: (130, 130, 140),
    SKY: (110, 160, 230),
    FLOOR: (120, 80, 45),
    TREE: (50, 130, 50),
    CEILING: (235, 235, 220),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate a synthetic ADE20K-layout data set')
    parser.add_argument('out_dir', help='data root to create')
    parser.add_argument('--num-train', type=int, default=300)
    parser.add_argument('--num-val', type=int, default=200)
    parser.add_argument('--size', type=int, default=64, help='image side')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


#: contrast of the camouflaging textures (grey levels either side)
CAMOUFLAGE = 120.0


def camouflage(size, rng):
    """Return an (H, W, 3) offset: one of the pretraining's textures (random
    kind, frequency in its bands and phase), +-CAMOUFLAGE along a random
    colour direction."""
    axis = torch.linspace(-1, 1, size, dtype=torch.float64)
    y, x = (t[None] for t in torch.meshgrid(axis, axis, indexing='ij'))
    frequency = rng.uniform(float(BANDS[0]), float(BANDS[-1]))
    phase = rng.uniform(0, 2 * np.pi)
    masks = texture_masks(x, y, torch.tensor(frequency),
                          torch.tensor(phase))[0]
    kind = int(rng.integers(len(masks)))
    direction = rng.normal(0, 1, 3)
    direction /= np.linalg.norm(direction)
    sign = np.where(masks[kind].numpy(), 1.0, -1.0)
    return CAMOUFLAGE * sign[..., None] * direction


def make_scene(size, rng):
    """Return an RGB image (uint8), its label map (uint8) and the scene
    category of one scene."""
    label = np.zeros((size, size), np.uint8)
    horizon = int(size * rng.uniform(0.25, 0.45))
    ground = int(size * rng.uniform(0.7, 0.85))
    yy, xx = np.mgrid[0:size, 0:size]
    indoor = rng.random() < 0.5
    if indoor:
        label[:horizon] = CEILING
        label[horizon:ground] = WALL
        label[ground:] = FLOOR
    else:  # outdoor: buildings and trees stand on the floor under the sky
        label[:ground] = SKY
        label[ground:] = FLOOR
        x = 0
        while x < size:
            width = int(rng.integers(size // 6, size // 3))
            top = int(rng.integers(horizon // 2, ground - size // 8))
            if rng.random() < 0.5:
                label[top:ground, x:x + width] = BUILDING
            else:
                cy, cx, r = (top + ground) / 2, x + width / 2, width / 2
                blob = ((yy - cy) / max(ground - top, 1) * 2)**2 + (
                    (xx - cx) / r)**2 < 1
                label[blob & (yy < ground + 2)] = TREE
            x += width + int(rng.integers(0, size // 8))
    for _ in range(rng.integers(0, 3)):  # "other" objects (label 0)
        cy, cx = rng.integers(0, size, 2)
        r = rng.integers(size // 16, size // 8)
        label[(yy - cy)**2 + (xx - cx)**2 < r * r] = OTHER

    image = np.zeros((size, size, 3), np.float32)
    for cls, colour in COLOURS.items():
        mask = label == cls
        if mask.any():
            jitter = rng.normal(0, 12, 3)
            image[mask] = (np.asarray(colour) + jitter)[None] + camouflage(
                size, rng)[mask]
    other = label == OTHER
    image[other] = rng.uniform(0, 255, 3)[None]
    image += rng.normal(0, 6, image.shape)
    scene = SCENES[indoor]
    return np.clip(image, 0, 255).astype(np.uint8), label, scene


def iou_of_majority(train_labels, val_labels, num_classes):
    """mIoU (%) on ``val_labels`` of predicting the most frequent class.

    Computed like mmseg's ``IoUMetric`` with ``reduce_zero_label``: label 0
    is ignored and the mean runs over the classes present in ground truth or
    prediction.
    """
    counts = np.bincount(
        np.concatenate([lbl.ravel() for lbl in train_labels]),
        minlength=num_classes + 1)[1:]
    majority = int(np.argmax(counts)) + 1
    gt = np.concatenate([lbl.ravel() for lbl in val_labels])
    gt = gt[gt != OTHER]
    ious = []
    for cls in range(1, num_classes + 1):
        inter = np.sum((gt == cls) & (cls == majority))
        union = np.sum(gt == cls) + (gt.size if cls == majority else 0) - inter
        if union > 0:
            ious.append(inter / union)
    return CLASSES[majority - 1], 100.0 * float(np.mean(ious))


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    labels = {}
    scenes = []
    for split, num in (('training', args.num_train),
                       ('validation', args.num_val)):
        img_dir = osp.join(args.out_dir, 'images', split)
        ann_dir = osp.join(args.out_dir, 'annotations', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        labels[split] = []
        for i in range(num):
            image, label, scene = make_scene(args.size, rng)
            name = f'ADE_demo_{split}_{i:05d}'
            scenes.append(f'{name} {scene}\n')
            cv2.imwrite(
                osp.join(img_dir, name + '.jpg'), image[..., ::-1],
                [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(osp.join(ann_dir, name + '.png'), label)
            labels[split].append(label)
    with open(osp.join(args.out_dir, 'sceneCategories.txt'), 'w') as f:
        f.writelines(scenes)
    majority, miou = iou_of_majority(labels['training'],
                                     labels['validation'], len(CLASSES))
    with open(osp.join(args.out_dir, 'majority_baseline.json'), 'w') as f:
        json.dump(dict(classes=CLASSES, majority_class=majority, mIoU=miou),
                  f, indent=2)
    print(f'Wrote {args.num_train} training and {args.num_val} validation '
          f'scenes to {args.out_dir}')
    print(f'Most-frequent-class predictor ({majority!r}): '
          f'validation mIoU {miou:.2f}')


if __name__ == '__main__':
    main()
