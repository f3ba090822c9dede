"""Convert GTAV's label maps to the 19 Cityscapes train ids.

Usage::

    python tools/dataset_converters/gta.py GTAV_ROOT [--nproc N]

GTAV_ROOT holds GTAV's unpacked archives (all ten parts of the images and of
the labels): ``images/NNNNN.png`` and ``labels/NNNNN.png``. A label map's
values (the palette indices of GTAV's PNGs, or the values of an 8-bit grey
PNG) are Cityscapes label ids; each map is written beside its source as
``labels/NNNNN_labelTrainIds.png`` (uint8: train ids 0-18, 255 = ignore),
the names of Rein's tools/convert_datasets/gta.py, which ``GTAVDataset``
reads. A map already converted (not older than its source) is skipped and
each is written atomically, so a stopped run can be started again. A
partial download (a missing folder, images without their label map or the
reverse) is an error naming the files.
"""
import argparse
import os.path as osp
from typing import List

from mmseg_cvpt.datasets.conversion import (Job, add_nproc_argument,
                                            convert_gtav_label, list_files,
                                            pair_files, run_jobs)
from mmseg_cvpt.engine.cli import add_debug_argument, run_tool

TRAIN_IDS = '_labelTrainIds'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('root', metavar='GTAV_ROOT',
                        help='the folder of images/ and labels/')
    add_nproc_argument(parser)
    add_debug_argument(parser)
    return parser.parse_args(argv)


def label_jobs(root: str) -> List[Job]:
    """(label map, its train-id map) of every image of GTAV_ROOT."""
    fix = ("unpack all ten parts of GTAV's images and labels "
           f'(01_images.zip ... 10_labels.zip) into {root}')
    images = list_files(osp.join(root, 'images'), '.png', fix)
    labels = {
        name: path
        for name, path in list_files(osp.join(root, 'labels'), '.png',
                                     fix).items()
        if not name.endswith(TRAIN_IDS)
    }
    return [((label, osp.splitext(label)[0] + TRAIN_IDS + '.png'), )
            for _, label in pair_files(images, labels, fix).values()]


def main(argv=None) -> int:
    args = parse_args(argv)
    run_jobs(convert_gtav_label, label_jobs(args.root), args.nproc,
             'GTAV label maps')
    return 0


if __name__ == '__main__':
    run_tool(main)
