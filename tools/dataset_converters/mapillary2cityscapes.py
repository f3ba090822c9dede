"""Convert Mapillary Vistas v1.2's label maps to the 19 Cityscapes train ids.

Usage::

    python tools/dataset_converters/mapillary2cityscapes.py MAPILLARY_ROOT \\
        [--nproc N] [--resize]

MAPILLARY_ROOT is the unpacked Mapillary Vistas download: for SPLIT
``training`` and ``validation`` (a split that is absent is left out), the
images ``SPLIT/images/NAME.jpg`` and v1.2's label maps (palette PNGs of its
66 class indices) ``SPLIT/labels/NAME.png`` (v1.2's download) or
``SPLIT/v1.2/labels/NAME.png`` (v2.0's, which Rein's script reads). As
Rein's tools/convert_datasets/mapillary2cityscape.py ``--train_id``, the
class indices become 19 train ids (255 = ignore; the mapping is
``MAPILLARY_TO_CITYSCAPES`` in mmseg_cvpt/datasets/dg.py), in Rein's layout::

    MAPILLARY_ROOT/cityscapes_trainIdLabel/{train,val}/label/NAME.png

``--resize`` then halves the validation split, which Rein tests on, as
Rein's mapillary_resize.py (images bicubic, labels nearest neighbour)::

    MAPILLARY_ROOT/half/val_img/NAME.jpg
    MAPILLARY_ROOT/half/val_label/NAME.png

``MapillaryCityscapesDataset`` reads either. A file already written (not
older than its source) is skipped and each is written atomically, so a
stopped run can be started again. A partial download (a missing folder,
images without their label map or the reverse) is an error naming the files.
"""
import argparse
import os.path as osp
from typing import Dict, List, Tuple

from mmseg_cvpt.datasets.conversion import (
    Job, add_nproc_argument, convert_mapillary_label, halve, list_files,
    pair_files, run_jobs)
from mmseg_cvpt.engine.cli import add_debug_argument, run_tool

#: Mapillary's split folder -> Rein's name of its converted labels
SPLITS = {'training': 'train', 'validation': 'val'}
CONVERTED = 'cityscapes_trainIdLabel'
HALF = 'half'

Pairs = Dict[str, Tuple[str, str]]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('root', metavar='MAPILLARY_ROOT',
                        help='the folder of training/ and validation/')
    add_nproc_argument(parser)
    parser.add_argument(
        '--resize',
        action='store_true',
        help=f'also halve the validation images and labels into {HALF}/')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def labels_folder(split_dir: str) -> str:
    """v1.2's labels: SPLIT/v1.2/labels (v2.0's download), SPLIT/labels."""
    nested = osp.join(split_dir, 'v1.2', 'labels')
    return nested if osp.isdir(nested) else osp.join(split_dir, 'labels')


def split_pairs(root: str) -> Dict[str, Pairs]:
    """Split -> name -> (image, label map), of the splits in ``root``."""
    splits = [split for split in SPLITS if osp.isdir(osp.join(root, split))]
    if not splits:
        raise FileNotFoundError(
            f'{root}: no training/ or validation/ folder; unpack Mapillary '
            'Vistas v1.2 there')
    pairs = {}
    for split in splits:
        split_dir = osp.join(root, split)
        fix = (f"unpack Mapillary Vistas v1.2's {split} split (images/ and "
               f'labels/ or v1.2/labels/) into {root}')
        pairs[split] = pair_files(
            list_files(osp.join(split_dir, 'images'), '.jpg', fix),
            list_files(labels_folder(split_dir), '.png', fix), fix)
    return pairs


def converted(root: str, split: str, name: str) -> str:
    """Where the train-id map of ``name`` goes."""
    return osp.join(root, CONVERTED, SPLITS[split], 'label', name + '.png')


def label_jobs(root: str, split: str, pairs: Pairs) -> List[Job]:
    return [((label, converted(root, split, name)), )
            for name, (_, label) in pairs.items()]


def half_jobs(root: str, pairs: Pairs) -> List[Job]:
    """(image, half image), (train-id map, half map) of the validation."""
    return [((image, osp.join(root, HALF, 'val_img', name + '.jpg')),
             (converted(root, 'validation', name),
              osp.join(root, HALF, 'val_label', name + '.png')))
            for name, (image, _) in pairs.items()]


def main(argv=None) -> int:
    args = parse_args(argv)
    pairs = split_pairs(args.root)
    if args.resize and 'validation' not in pairs:
        raise FileNotFoundError(
            f"{osp.join(args.root, 'validation')}: no such folder, which "
            "--resize halves; unpack Mapillary Vistas v1.2's validation "
            f'split into {args.root}')
    for split in SPLITS.keys() - pairs.keys():
        print(f'{split}: no such folder in {args.root}, left out')
    for split, split_files in pairs.items():
        run_jobs(convert_mapillary_label,
                 label_jobs(args.root, split, split_files), args.nproc,
                 f'{split} label maps')
    if args.resize:
        run_jobs(halve, half_jobs(args.root, pairs['validation']),
                 args.nproc, 'halved validation images and label maps')
    return 0


if __name__ == '__main__':
    run_tool(main)
