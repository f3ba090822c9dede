"""Domain-generalised segmentation end to end on the synthetic demo
(tools/misc/make_dg_demo.py: a GTAV-layout source, Cityscapes- and
Mapillary-layout targets, converted by our converters): a 2-iteration
training evaluates every target, tools/test.py (and --aug-test) reports each
target's mIoU and their mean; the metric's split by target on known values;
check_dataset.py naming an unconverted GTAV label map."""
import json
import os.path as osp
import re
import shutil

import pytest
import torch
from mmseg.registry import DATASETS

from mmseg_cvpt.evaluation import MultiTargetIoUMetric
from tiny_runs import (REPO, run_cli_in_process, run_in_process,
                       tiny_run_options)
from tool_loading import load_tool

CONFIG = osp.join(REPO, 'configs', 'baseline',
                  'mask2former_vittiny_gta2city_demo.py')
TARGETS = ('cityscapes', 'mapillary')


@pytest.fixture(scope='module')
def dg_demo(tmp_path_factory):
    """The DG demo, 8 source scenes and 2 of each target, its GTAV and
    Mapillary labels converted as the real ones are."""
    root = tmp_path_factory.mktemp('dg_demo')
    load_tool('misc/make_dg_demo.py').main(
        [str(root), '--num-train', '8', '--num-val', '2'])
    assert load_tool('dataset_converters/gta.py').main(
        [str(root / 'gtav'), '--nproc', '1']) == 0
    assert load_tool('dataset_converters/mapillary2cityscapes.py').main(
        [str(root / 'mapillary'), '--resize', '--nproc', '1']) == 0
    return root


def dg_options(root, iters=None):
    """--cfg-options for a tiny run on the DG demo at ``root``."""
    return [f'train_dataloader.dataset.data_root={root}/gtav'] + [
        f'{loader}.dataset.targets.{target}.data_root={root}/{target}'
        for loader in ('val_dataloader', 'test_dataloader')
        for target in TARGETS] + tiny_run_options(iters)


def printed_table(out):
    """The last per-target table printed: target -> mIoU."""
    rows = re.findall(r'^\|\s*(\w[\w ]*?)\s*\|\s*[\d.]+\s*\|\s*([\d.]+)\s*\|'
                      r'\s*[\d.]+\s*\|$', out, re.MULTILINE)
    table = {}
    for name, miou in rows:  # later tables overwrite earlier ones
        table[name] = float(miou)
    assert set(TARGETS) | {'mean of 2'} <= set(table), out[-3000:]
    return table


def results_json(work_dir):
    paths = [p for p in work_dir.glob('*/*.json')]
    assert len(paths) == 1, paths
    return json.loads(paths[0].read_text())


def assert_mean_of_targets(values):
    mean = sum(values[f'{t}/mIoU'] for t in TARGETS) / len(TARGETS)
    assert values['mIoU'] == pytest.approx(mean, abs=0.01)


def test_demo_trains_and_tests_every_target(dg_demo, tmp_path):
    """2 iterations of tools/train.py on the source: the validation
    evaluates both targets, logs each mIoU and their mean and prints them as
    one table; tools/test.py on the checkpoint gives the same numbers, in
    its results JSON too; --aug-test evaluates every target's 12 views."""
    train_dir = tmp_path / 'train'
    out = run_in_process('train.py', [
        CONFIG, '--work-dir', train_dir, '--cfg-options',
        *dg_options(dg_demo, 2)])
    scalars = [json.loads(line) for path in train_dir.glob(
        '*/vis_data/scalars.json') for line in path.read_text().split('\n')
        if line.strip()]
    validation = [line for line in scalars if 'mIoU' in line][-1]
    assert_mean_of_targets(validation)
    table = printed_table(out)
    for target in TARGETS:
        assert table[target] == pytest.approx(
            validation[f'{target}/mIoU'], abs=0.01)
    assert table['mean of 2'] == pytest.approx(validation['mIoU'], abs=0.01)

    test_dir = tmp_path / 'test'
    out = run_in_process('test.py', [
        CONFIG, train_dir / 'iter_2.pth', '--work-dir', test_dir,
        '--cfg-options', *dg_options(dg_demo)])
    results = results_json(test_dir)
    for key in [f'{t}/mIoU' for t in TARGETS] + ['mIoU']:
        assert results[key] == pytest.approx(validation[key], abs=0.01)
    assert printed_table(out)['mean of 2'] == pytest.approx(
        results['mIoU'], abs=0.01)
    assert re.search(r'cityscapes/mIoU: [\d.]+ .*mapillary/mIoU: [\d.]+ '
                     r'.*mIoU: [\d.]+', out)

    aug_dir = tmp_path / 'aug'
    out = run_in_process('test.py', [
        CONFIG, train_dir / 'iter_2.pth', '--aug-test', '--work-dir',
        aug_dir, '--cfg-options', *dg_options(dg_demo)])
    assert 'merged 48 views of 4 images (12 per image)' in out
    results = results_json(aug_dir)
    assert_mean_of_targets(results)
    table = printed_table(out)
    for target in TARGETS:
        assert table[target] == pytest.approx(results[f'{target}/mIoU'],
                                              abs=0.01)


def sample(path, pred, label):
    return dict(img_path=path, pred_sem_seg=dict(data=torch.tensor([pred])),
                gt_sem_seg=dict(data=torch.tensor([label])))


def test_metric_evaluates_each_target_and_their_mean():
    """Known values: target ``a`` predicted exactly (mIoU 100), target
    ``b`` all class 0 where half is class 1 (IoU 50 and 0: mIoU 25); the
    mean of the targets is 62.5, not the pooled pixels' mIoU; a sample in
    no target's folder is an error naming it."""
    metric = MultiTargetIoUMetric()
    metric.dataset_meta = dict(classes=('x', 'y', 'z'),
                               targets=dict(a='/data/a', b='/data/ab'))
    metric.process({}, [sample('/data/a/1.png', [[0, 1]], [[0, 1]]),
                        sample('/data/ab/1.png', [[0, 0]], [[0, 1]])])
    metric.process({}, [sample('/data/a/2.png', [[2, 2]], [[2, 2]])])
    values = metric.evaluate(3)
    assert values['a/mIoU'] == 100.0
    assert values['b/mIoU'] == 25.0
    assert values['mIoU'] == 62.5
    assert values['b/aAcc'] == 50.0
    with pytest.raises(ValueError, match='/data/c/1.png is in none'):
        metric.process({}, [sample('/data/c/1.png', [[0]], [[0]])])


def test_targets_must_have_their_own_images(dg_demo):
    target = dict(type='CityscapesDataset', data_root=f'{dg_demo}/cityscapes',
                  data_prefix=dict(img_path='leftImg8bit/val',
                                   seg_map_path='gtFine/val'), pipeline=[])
    dataset = DATASETS.build(dict(type='MultiTargetDataset',
                                  targets=dict(one=target)))
    assert dataset.metainfo['targets'] == {
        'one': osp.join(str(dg_demo), 'cityscapes', 'leftImg8bit', 'val')}
    with pytest.raises(ValueError, match='share an image folder'):
        DATASETS.build(dict(type='MultiTargetDataset',
                            targets=dict(one=target, two=target)))


def test_check_dataset_names_an_unconverted_gtav_label_map(dg_demo,
                                                           tmp_path):
    gtav = tmp_path / 'gtav'
    shutil.copytree(dg_demo / 'gtav', gtav)
    (gtav / 'labels' / '00003_labelTrainIds.png').unlink()
    code, out = run_cli_in_process('misc/check_dataset.py', [
        CONFIG, '--split', 'train', '--cfg-options',
        f'train_dataloader.dataset.data_root={gtav}'])
    assert code == 1
    assert ('1 GTAV label maps not converted to train ids (no '
            f'*_labelTrainIds.png beside them): {gtav}/labels/00003.png. Run '
            f'python tools/dataset_converters/gta.py {gtav}') in out, out


def test_compare_methods_tables_each_target():
    """compare_methods.py reads each target's mIoU from a run's last
    evaluation and tables them per run, single- and multi-scale; a setting
    of one data set has no such table."""
    tool = load_tool('analysis/compare_methods.py')
    logged = [{'loss': 1.0},
              {'cityscapes/mIoU': 40.0, 'mapillary/mIoU': 60.0, 'mIoU': 50.0},
              {'loss': 0.5},
              {'cityscapes/mIoU': 50.0, 'mapillary/mIoU': 71.0, 'mIoU': 60.5}]
    targets = tool.target_mious(logged)
    assert targets == {'cityscapes': 50.0, 'mapillary': 71.0}
    row = dict(method='CVPT', prompts=8, seed=0, accuracy=60.5,
               targets=targets, accuracy_ms=62.0,
               targets_ms={'cityscapes': 52.0, 'mapillary': 72.0})
    table = tool.target_table([row]).split('\n')
    assert table[0] == '| method | P | seed | cityscapes | mapillary | mean |'
    assert table[2:] == ['| CVPT | 8 | 0 | 50.00 | 71.00 | 60.50 |',
                         '| CVPT (multi-scale) | 8 | 0 | 52.00 | 72.00 | '
                         '62.00 |']
    assert tool.target_mious([{'mIoU': 3.0}]) == {}
    assert tool.target_table([dict(row, targets={}, targets_ms={})]) is None


def test_check_dataset_names_an_unconverted_mapillary(dg_demo, tmp_path):
    """Mapillary's download without the converted folders: the converter
    to run, not a missing folder."""
    mapillary = tmp_path / 'mapillary'
    shutil.copytree(dg_demo / 'mapillary' / 'validation',
                    mapillary / 'validation')
    code, out = run_cli_in_process('misc/check_dataset.py', [
        CONFIG, '--split', 'test', '--cfg-options',
        f'test_dataloader.dataset.targets.mapillary.data_root={mapillary}',
        f'test_dataloader.dataset.targets.cityscapes.data_root='
        f'{dg_demo}/cityscapes'])
    assert code == 1
    assert (f'Mapillary not converted to the 19 classes: no '
            f'{mapillary}/half/val_img, {mapillary}/half/val_label. Run '
            'python tools/dataset_converters/mapillary2cityscapes.py '
            f'{mapillary} --resize') in out, out
    assert 'Data set folder not found' not in out
