"""Label maps of more than 8 bits: named by check_dataset.py, refused by the
training pipeline when mmseg's cast to uint8 would change them; 8-bit maps
load exactly as in mmseg."""
import numpy as np
import pytest
from mmseg.datasets import ADE20KDataset
from mmseg.datasets.transforms import LoadAnnotations as MMSegLoadAnnotations
from mmseg.registry import TRANSFORMS
from PIL import Image

from mmseg_cvpt.datasets import LabelMapError
from tiny_runs import DEMO_CFG
from tool_loading import load_tool

pytestmark = pytest.mark.filterwarnings(
    'ignore:`reduce_zero_label` will be deprecated')

#: an 8x8 label map of the demo's 6 classes (0: ignored after
#: reduce_zero_label), with the ignore index 255
LABELS = np.array([[0, 1, 2, 3, 4, 5, 6, 255]] * 8, dtype=np.uint8)
WRAPPING = np.where(LABELS == 255, np.uint16(257), LABELS)  # 257 wraps to 1
MESSAGE = ("label map of PIL mode 'I;16' (uint16), largest value 257: mmseg "
           'casts label maps to uint8, which wraps values outside 0-255 '
           'around; convert the labels to 8-bit class indices (0-255, 255 = '
           'ignore)')


def save(path, label, mode=None):
    """Save ``label`` at ``path`` (as a palette map for ``mode='P'``)."""
    image = Image.fromarray(label)
    if mode == 'P':  # the values become the palette indices
        image.putpalette([v for i in range(256) for v in (i, i, i)])
    image.save(path)
    return path


def tiny_ade(root, labels):
    """An ADE20K-layout training split of 8x8 scenes, one per label map."""
    images = root / 'images' / 'training'
    annotations = root / 'annotations' / 'training'
    images.mkdir(parents=True)
    annotations.mkdir(parents=True)
    for index, label in enumerate(labels):
        name = f'ADE_train_{index:08d}'
        Image.fromarray(np.full((8, 8, 3), 90 * index, np.uint8)).save(
            images / f'{name}.jpg')
        save(annotations / f'{name}.png', label)
    return root


def build_load_annotations(**kwargs):
    """mmseg's LoadAnnotations as configs build it (after mmseg_cvpt)."""
    transform = TRANSFORMS.build(dict(type='LoadAnnotations', **kwargs))
    assert type(transform) is not MMSegLoadAnnotations
    return transform


def load(transform, path, reduce_zero_label=False, label_map=None):
    return transform(
        dict(seg_map_path=str(path), reduce_zero_label=reduce_zero_label,
             label_map=label_map, seg_fields=[]))


def test_check_dataset_names_a_16bit_label_map(tmp_path, capsys):
    root = tiny_ade(tmp_path / 'data', [LABELS, WRAPPING, LABELS])
    wide = root / 'annotations' / 'training' / 'ADE_train_00000001.png'
    code = load_tool('misc/check_dataset.py').main(
        [DEMO_CFG, '--cfg-options',
         f'train_dataloader.dataset.data_root={root}'])
    out = capsys.readouterr().out
    assert code == 1, out
    assert f'1 label maps that are not 8-bit:\n    {wide}: {MESSAGE}' in out
    assert '1 problems found.' in out


def test_check_dataset_names_16bit_maps_whose_values_fit(tmp_path, capsys):
    """Training accepts them (see the next tests), the data check not."""
    root = tiny_ade(tmp_path / 'data', [LABELS.astype(np.uint16)])
    code = load_tool('misc/check_dataset.py').main(
        [DEMO_CFG, '--cfg-options',
         f'train_dataloader.dataset.data_root={root}'])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "label map of PIL mode 'I;16' (uint16), largest value 255" in out
    assert '1 problems found.' in out


@pytest.mark.parametrize('suffix, imdecode_backend',
                         [('.png', 'pillow'), ('.png', 'cv2'),
                          ('.tif', 'pillow')])
def test_pipeline_refuses_a_wrapping_label_map(tmp_path, suffix,
                                               imdecode_backend):
    path = save(tmp_path / f'wide{suffix}', WRAPPING)
    transform = build_load_annotations(reduce_zero_label=True,
                                       imdecode_backend=imdecode_backend)
    with pytest.raises(LabelMapError) as error:
        load(transform, path, reduce_zero_label=True)
    assert str(error.value) == f'{path}: {MESSAGE}'


@pytest.mark.parametrize('label', [np.int32(-1), np.float32(1.5)],
                         ids=['negative', 'fractional'])
def test_pipeline_refuses_negative_or_fractional_labels(tmp_path, label):
    path = save(tmp_path / 'wide.tif', np.full((8, 8), label))
    with pytest.raises(LabelMapError, match=f'{path}: label map of PIL mode'):
        load(build_load_annotations(), path)


def test_datasets_use_the_checking_transform(tmp_path):
    root = tiny_ade(tmp_path / 'data', [WRAPPING])
    dataset = ADE20KDataset(
        data_root=str(root),
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        pipeline=[dict(type='LoadAnnotations')])
    with pytest.raises(ValueError, match='ADE_train_00000000.png: label map '
                       r"of PIL mode 'I;16' \(uint16\), largest value 257"):
        dataset[0]


@pytest.mark.parametrize('name, label, mode',
                         [('8bit.png', LABELS, None),
                          ('palette.png', LABELS, 'P'),
                          ('8bit.tif', LABELS, None),
                          ('16bit.png', LABELS.astype(np.uint16), None)],
                         ids=['8bit', 'palette', '8bit_tif', '16bit'])
@pytest.mark.parametrize('reduce_zero_label, label_map',
                         [(False, None), (True, None), (True, {0: 5, 5: 0})])
def test_maps_that_fit_8_bits_load_as_in_mmseg(tmp_path, name, label, mode,
                                               reduce_zero_label, label_map):
    """8-bit maps, and 16-bit ones whose values fit 0..255, give exactly
    what mmseg gives for the 8-bit PNG."""
    path = save(tmp_path / name, label, mode)
    eight_bit = save(tmp_path / 'mmseg.png', LABELS)
    ours = load(build_load_annotations(reduce_zero_label=reduce_zero_label),
                path, reduce_zero_label, label_map)
    mmseg = load(MMSegLoadAnnotations(reduce_zero_label=reduce_zero_label),
                 eight_bit, reduce_zero_label, label_map)
    assert ours['gt_seg_map'].dtype == mmseg['gt_seg_map'].dtype == np.uint8
    np.testing.assert_array_equal(ours['gt_seg_map'], mmseg['gt_seg_map'])
    assert ours['seg_fields'] == mmseg['seg_fields'] == ['gt_seg_map']
