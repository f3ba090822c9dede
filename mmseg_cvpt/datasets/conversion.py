"""The file handling of the data set converters
(tools/dataset_converters/{gta,mapillary2cityscapes}.py; here so that their
worker processes can import it): listing and pairing the files, skipping
what is up to date, atomic writes, parallel jobs with a progress bar, and
the label conversions themselves (the tables: :mod:`.dg`)."""
import argparse
import io
import os
import os.path as osp
import sys
from typing import Callable, Dict, List, Tuple

import numpy as np
from mmengine.utils import scandir, track_parallel_progress, track_progress
from PIL import Image

from ..engine.checkpoint import write_atomic
from ..engine.cli import positive_int
from ..listing import listed
from .dg import GTAV_TABLE, MAPILLARY_TABLE, MAPILLARY_V12_CLASSES

#: (source, output) file pairs that one task writes
Job = Tuple[Tuple[str, str], ...]


def list_files(folder: str, suffix: str, fix: str) -> Dict[str, str]:
    """Files below ``folder`` ending in ``suffix``: name without it -> path.
    A missing folder is a FileNotFoundError that ends with ``fix``."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{folder}: no such folder; {fix}')
    return {
        name[:-len(suffix)]: osp.join(folder, name)
        for name in scandir(folder, suffix, recursive=True)
    }


def pair_files(images: Dict[str, str], labels: Dict[str, str],
               fix: str) -> Dict[str, Tuple[str, str]]:
    """Name -> (image, label map), sorted by name. Images without a label
    map, label maps without an image or no files at all are a
    FileNotFoundError naming them, which ends with ``fix``."""
    lone = ((sorted(images[name] for name in images.keys() - labels.keys()),
             'images without a label map'),
            (sorted(labels[name] for name in labels.keys() - images.keys()),
             'label maps without an image'))
    problems = [f'{what} ({len(paths)}): {listed(paths)}'
                for paths, what in lone if paths]
    if problems or not images:
        raise FileNotFoundError(
            '; '.join(problems or ['found no image or label map']) +
            f'; {fix}')
    return {name: (images[name], labels[name]) for name in sorted(images)}


def is_up_to_date(output: str, source: str) -> bool:
    """Whether ``output`` exists and is not older than ``source``."""
    return (osp.exists(output)
            and os.stat(output).st_mtime_ns >= os.stat(source).st_mtime_ns)


def add_nproc_argument(parser: argparse.ArgumentParser) -> None:
    """A converter's ``--nproc``: its worker processes."""
    parser.add_argument(
        '--nproc',
        type=positive_int,
        default=os.cpu_count(),
        help='worker processes (default: the CPU count)')


def run_jobs(func: Callable[[Job], None], jobs: List[Job], nproc: int,
             what: str) -> int:
    """Run ``func`` on each job with an output that is missing or older
    than its source, in ``nproc`` processes with a progress bar; returns
    how many jobs were skipped."""
    todo = [
        job for job in jobs
        if not all(is_up_to_date(output, source) for source, output in job)
    ]
    skipped = len(jobs) - len(todo)
    print(f'{what}: {len(todo)} to write, skipped {skipped} up to date '
          '(not older than their sources)')
    if nproc > 1 and len(todo) > 1:
        track_parallel_progress(
            func, todo, min(nproc, len(todo)), file=sys.stdout)
    elif todo:
        track_progress(func, todo, file=sys.stdout)
    return skipped


def save_atomic(image: Image.Image, path: str) -> None:
    """Save ``image`` to ``path`` (the format its extension names) with
    :func:`write_atomic`: complete or absent."""
    data = io.BytesIO()
    image.save(data, format=Image.registered_extensions()[
        osp.splitext(path)[1].lower()])
    write_atomic(data.getvalue(), path)


def read_indices(path: str) -> np.ndarray:
    """The pixel values of an 8-bit label map: a palette map's indices (not
    its colours) or a grey map's values."""
    with Image.open(path) as image:
        if image.mode not in ('P', 'L'):
            raise ValueError(
                f'{path}: label map of PIL mode {image.mode!r}, not class '
                "indices in a palette ('P') or 8-bit grey ('L') PNG; unpack "
                "the dataset's original label PNGs again")
        return np.asarray(image)


def convert_gtav_label(job: Job) -> None:
    """Write GTAV's label map ``job[0][0]`` (Cityscapes label ids) as train
    ids to ``job[0][1]``."""
    (source, output), = job
    save_atomic(Image.fromarray(GTAV_TABLE[read_indices(source)]), output)


def convert_mapillary_label(job: Job) -> None:
    """Write Mapillary v1.2's label map ``job[0][0]`` (its 66 class
    indices) as Cityscapes train ids to ``job[0][1]``."""
    (source, output), = job
    indices = read_indices(source)
    if indices.max() >= len(MAPILLARY_V12_CLASSES):
        raise ValueError(
            f'{source}: class index {indices.max()}, beyond Mapillary '
            f"v1.2's {len(MAPILLARY_V12_CLASSES)} classes (a v2.0 label "
            "map?); give v1.2's labels (SPLIT/v1.2/labels in the v2.0 "
            'download)')
    save_atomic(Image.fromarray(MAPILLARY_TABLE[indices]), output)


def halve(job: Job) -> None:
    """Save the image ``job[0][0]`` (bicubic) and its label map
    ``job[1][0]`` (nearest neighbour) at half the image's width and height
    to ``job[0][1]`` and ``job[1][1]``, as Rein's mapillary_resize.py."""
    (image_file, half_image), (label_file, half_label) = job
    with Image.open(image_file) as image, Image.open(label_file) as label:
        if label.size != image.size:
            raise ValueError(
                f'{label_file}: label map of {label.size[0]}x'
                f'{label.size[1]} for an image of {image.size[0]}x'
                f'{image.size[1]} ({image_file}); convert its label again')
        size = (image.width // 2, image.height // 2)
        save_atomic(image.resize(size, Image.Resampling.BICUBIC), half_image)
        save_atomic(label.resize(size, Image.Resampling.NEAREST), half_label)
