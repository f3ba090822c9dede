"""Read every image and annotation of a data set split and report problems.

Goes through the config's dataset (folders, suffixes, ``reduce_zero_label``,
classes, ``ignore_index``) with mmseg's own loading transforms, and reports

* missing or empty folders, images without annotations and the reverse,
* files that cannot be read,
* images whose annotation has another size,
* label maps with several channels (e.g. RGB colour-coded maps: mmseg
  reads a label map's pixels as class indices; palette 'P' maps are read as
  their indices, which is right), with their PIL mode,
* label maps that are not 8-bit (e.g. 16-bit PNGs, PIL mode 'I;16'): mmseg
  casts label maps to uint8, so 257 trains as class 1 (the training pipeline
  refuses such maps only when the cast changes a value), with their mode and
  largest value,
* label values outside [0, num_classes) other than the ignore index (the
  files and the values), and a model whose ``num_classes`` differs from the
  data set's classes,

then the pixel frequency of each class. Exits 1 when there is a problem.

Example::

    python tools/misc/check_dataset.py configs/cvpt/upernet_vitb_ade20k.py \
        --split val --cfg-options val_dataloader.dataset.data_root=PATH
"""
import argparse
import warnings
from collections import defaultdict

import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine.config import DictAction
from mmengine.registry import init_default_scope
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import DATASETS
from PIL import Image

from mmseg_cvpt.datasets import LabelMapError, check_label_file
from mmseg_cvpt.engine import load_config
from mmseg_cvpt.engine.cli import add_debug_argument, run_tool
from mmseg_cvpt.engine.preflight import (NUM_FILES_SHOWN, dataset_problems,
                                         leaf_datasets, preparation_problems,
                                         segmentation_files, unpaired_files)

# mmengine re-imports the deprecated pkg_resources for every `pkg::` base
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Check the images and annotations of a data set split')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--split',
        choices=['train', 'val', 'test'],
        default='train',
        help='which dataloader\'s data set to check (default: train)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value')
    add_debug_argument(parser)
    return parser.parse_args(argv)


class Report:
    """Problems and class pixel counts gathered over the files."""

    def __init__(self, classes):
        self.classes = classes
        self.problems = []
        self.unreadable = []
        self.size_mismatch = []
        self.multi_channel = []
        self.not_8bit = []
        self.bad_labels = defaultdict(list)  # value -> files
        self.pixels = np.zeros(len(classes), dtype=np.int64)
        self.ignored = 0

    def add_sample(self, info: dict, ignore_index: int) -> None:
        """Read one image and its annotation; record what is wrong."""
        try:
            results = LoadImageFromFile()(dict(info))
            check_label_file(info['seg_map_path'], strict=True)
            results = LoadAnnotations()(results)
        except LabelMapError as error:  # mmseg would cast it: not counted
            self.not_8bit.append(str(error))
            return
        except Exception as error:  # any unreadable file is a finding
            self.unreadable.append(f'{info["img_path"]} / '
                                   f'{info["seg_map_path"]}: {error!r}')
            return
        label = results['gt_seg_map']
        if label.shape[:2] != results['img'].shape[:2]:
            self.size_mismatch.append(
                f'{info["seg_map_path"]} {label.shape[0]}x{label.shape[1]}, '
                f'image {results["img"].shape[0]}x{results["img"].shape[1]}')
        if label.ndim > 2:  # its values are no class indices: not counted
            with Image.open(info['seg_map_path']) as image:
                self.multi_channel.append(
                    f'{info["seg_map_path"]}: {label.shape[2]} channels '
                    f'(PIL mode {image.mode!r})')
            return
        values, counts = np.unique(label, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist()):
            if value == ignore_index:
                self.ignored += count
            elif 0 <= value < len(self.classes):
                self.pixels[value] += count
            else:
                self.bad_labels[value].append(info['seg_map_path'])

    def finish(self, ignore_index: int) -> None:
        """Turn the per-file findings into problems."""
        for files, what in ((self.unreadable, 'unreadable files'),
                            (self.size_mismatch,
                             'annotations whose size differs from the '
                             'image'),
                            (self.multi_channel,
                             'label maps with several channels (mmseg reads '
                             'one channel of class indices: save them as '
                             "single-channel PNGs of class indices, PIL mode "
                             "'L' or 'P'; map the colours of colour-coded "
                             'maps to their class indices first)'),
                            (self.not_8bit, 'label maps that are not 8-bit')):
            if files:
                self.problems.append(f'{len(files)} {what}:\n' +
                                     _lines(files))
        for value, files in sorted(self.bad_labels.items()):
            self.problems.append(
                f'label value {value} (after reduce_zero_label) is outside '
                f'[0, {len(self.classes)}) and not the ignore index '
                f'{ignore_index}, in {len(files)} annotations:\n' +
                _lines(files))

    def print(self) -> None:
        if self.classes:
            self.print_frequencies()
        for problem in self.problems:
            print(f'PROBLEM: {problem}')
        print(f'{len(self.problems)} problems found.' if self.problems else
              'No problems found.')

    def print_frequencies(self) -> None:
        total = max(int(self.pixels.sum()) + self.ignored, 1)
        print('class pixel frequencies:')
        for index, (name, count) in enumerate(zip(self.classes,
                                                  self.pixels)):
            print(f'  {index:4d} {name:<24} {count:>14,} '
                  f'{100 * count / total:6.2f}%')
        print(f'  {"ignored":>29} {self.ignored:>14,} '
              f'{100 * self.ignored / total:6.2f}%')


def _lines(files) -> str:
    shown = [f'    {f}' for f in files[:NUM_FILES_SHOWN * 4]]
    if len(files) > len(shown):
        shown.append(f'    ... and {len(files) - len(shown)} more')
    return '\n'.join(shown)


def model_class_problems(cfg, num_classes: int):
    """Heads whose ``num_classes`` differs from the data set's classes."""
    problems = []
    for name in ('decode_head', 'auxiliary_head'):
        heads = cfg.get('model', {}).get(name) or []
        for head in heads if isinstance(heads, list) else [heads]:
            if head.get('num_classes', num_classes) != num_classes:
                problems.append(
                    f'model.{name}.num_classes={head["num_classes"]} but the '
                    f'data set has {num_classes} classes')
    return problems


def _unpaired_images(dataset_cfg: dict) -> set:
    """Images without an annotation (the pairing check reports them)."""
    files = segmentation_files(dataset_cfg)
    return set() if files is None else set(unpaired_files(*files)[0])


def read_all(report: Report, dataset, skip: set, where: str) -> None:
    """Read every sample of ``dataset`` but the images in ``skip``."""
    print(f'reading {len(dataset)} samples of {where} '
          f'({type(dataset).__name__}, {len(report.classes)} classes, '
          f'reduce_zero_label={dataset.reduce_zero_label})')
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        if info['img_path'] not in skip:
            report.add_sample(info, dataset.ignore_index)


def check(cfg, split: str) -> Report:
    """Check every file of the ``split`` data set of ``cfg``."""
    where = f'{split}_dataloader.dataset'
    leaves = list(leaf_datasets(cfg[f'{split}_dataloader']['dataset']))
    problems = [p for leaf in leaves
                for p in preparation_problems(leaf, where)]
    if problems:
        report = Report(())
        report.problems = problems
        return report
    problems = [p for leaf in leaves for p in dataset_problems(leaf, where)]
    datasets = [DATASETS.build(dict(leaf, pipeline=[])) for leaf in leaves]
    report = Report(datasets[0].metainfo['classes'])
    for leaf, dataset in zip(leaves, datasets):
        read_all(report, dataset, _unpaired_images(leaf), where)
    report.finish(datasets[0].ignore_index)
    report.problems = problems + report.problems + model_class_problems(
        cfg, len(report.classes))
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    report = check(cfg, args.split)
    report.print()
    return 1 if report.problems else 0


if __name__ == '__main__':
    run_tool(main)
