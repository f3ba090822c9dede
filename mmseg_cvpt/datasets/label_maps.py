"""Label maps that mmseg would read wrongly: those of more than 8 bits.

mmseg's ``LoadAnnotations`` casts the decoded label map to uint8, so a
16-bit PNG (PIL mode 'I;16' or 'I') holding 257 silently trains as class 1
(class 0 after ``reduce_zero_label``). :func:`check_label_file` finds such
maps and writes the one message about them; two places use it:

* :class:`LoadAnnotations`, registered in mmseg's ``TRANSFORMS`` under
  mmseg's own name, so that every ``dict(type='LoadAnnotations', ...)``
  builds it once ``mmseg_cvpt`` is imported: it refuses a map whose values
  the cast would change (above 255, below 0 or not whole numbers) and
  otherwise is mmseg's transform, with the same results;
* tools/misc/check_dataset.py (``strict=True``), which reports every label
  map that is not 8-bit.

A 16-bit map whose values all lie in 0..255 therefore trains (the cast keeps
its values: the result equals that of the 8-bit map, and refusing it would
break data sets that train correctly today), but the data check reports it:
the next label above 255 would wrap silently, and training decodes such a
map twice (once for the check).

The check is cheap for 8-bit maps: the PNG header's bit depth (or, in other
formats, PIL's mode, read from the header) shows them without decoding, at
the cost of reading the file's bytes once more (measured: 15-30 us, 1-1.5%
of mmseg's 1.9 ms for a 512x683 ADE20K-like map of 30 kB).
"""
import io
from typing import Optional

import mmcv
import numpy as np
from mmengine import fileio
from mmseg.datasets.transforms import LoadAnnotations as MMSegLoadAnnotations
from mmseg.registry import TRANSFORMS
from PIL import Image

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
#: where the bit depth (per sample) lies in a PNG: in its first chunk, IHDR
PNG_BIT_DEPTH = 24
#: PIL modes of one channel of at most 8 bits
EIGHT_BIT_MODES = ('1', 'L', 'P')
FIX = 'convert the labels to 8-bit class indices (0-255, 255 = ignore)'


class LabelMapError(ValueError):
    """A label map that mmseg's cast to uint8 would change."""


def check_label_file(path: str,
                     backend_args: Optional[dict] = None,
                     imdecode_backend: str = 'pillow',
                     strict: bool = False) -> None:
    """Raise :class:`LabelMapError` for a label map mmseg would misread.

    A map whose header shows at most 8 bits per sample passes undecoded.
    Any other map is decoded as ``LoadAnnotations`` decodes it (with
    ``imdecode_backend``) and refused when the cast to uint8 would change a
    value or, with ``strict``, when it is not 8-bit at all.
    """
    img_bytes = fileio.get(path, backend_args=backend_args)
    if _stored_8bit(img_bytes):
        return
    label = mmcv.imfrombytes(
        img_bytes, flag='unchanged', backend=imdecode_backend).squeeze()
    if (strict and label.dtype != np.uint8) or _changed_by_uint8_cast(label):
        raise LabelMapError(_message(path, img_bytes, label))


def _stored_8bit(img_bytes: bytes) -> bool:
    """Whether the file's header shows at most 8 bits per sample."""
    if img_bytes.startswith(PNG_SIGNATURE):
        return (len(img_bytes) > PNG_BIT_DEPTH
                and img_bytes[PNG_BIT_DEPTH] <= 8)
    return _pil_mode(img_bytes) in EIGHT_BIT_MODES


def _pil_mode(img_bytes: bytes) -> Optional[str]:
    """The PIL mode of an image file (read from its header), or None when
    PIL cannot open it."""
    try:
        with Image.open(io.BytesIO(img_bytes)) as image:
            return image.mode
    except OSError:  # PIL.UnidentifiedImageError
        return None


def _changed_by_uint8_cast(label: np.ndarray) -> bool:
    with np.errstate(invalid='ignore'):  # NaN or infinity in a float map
        return not np.array_equal(label, label.astype(np.uint8))


def _message(path: str, img_bytes: bytes, label: np.ndarray) -> str:
    mode = _pil_mode(img_bytes)
    stored = (f'PIL mode {mode!r} ({label.dtype})'
              if mode else f'dtype {label.dtype}')
    return (f'{path}: label map of {stored}, largest value {label.max()}: '
            'mmseg casts label maps to uint8, which wraps values outside '
            f'0-255 around; {FIX}')


@TRANSFORMS.register_module(name='LoadAnnotations', force=True)
class LoadAnnotations(MMSegLoadAnnotations):
    """mmseg's ``LoadAnnotations`` that refuses, with a
    :class:`LabelMapError`, a label map that its cast to uint8 would change
    (see :func:`check_label_file`); any other map gives mmseg's result.

    It takes mmseg's place in mmseg's ``TRANSFORMS`` registry, under the
    same name.
    """

    def _load_seg_map(self, results: dict) -> None:
        check_label_file(results['seg_map_path'], self.backend_args,
                         self.imdecode_backend)
        super()._load_seg_map(results)
