"""mIoU per target data set of a domain-generalisation test, and their
mean, in one evaluation (``MultiTargetIoUMetric``, registered in mmseg)."""
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Sequence

import numpy as np
from mmengine.logging import print_log
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS
from prettytable import PrettyTable


@METRICS.register_module()
class MultiTargetIoUMetric(IoUMetric):
    """mmseg's ``IoUMetric`` on each target of a ``MultiTargetDataset``
    (a sample's target: the one whose image folder holds it), and over
    the T targets

        mIoU = (1 / T) * sum_t mIoU_t,

    each target weighing the same whatever its size, as the domain-
    generalisation tables report it (Rein's). The results are
    ``{target}/{metric}`` (``cityscapes/mIoU``) and, for each metric, the
    mean over the targets under its own name (``mIoU``: what the runner's
    best-checkpoint choice and the tools read); printed as one table, one
    row per target and the mean.
    """

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        done = len(self.results)
        super().process(data_batch, data_samples)
        for index, sample in zip(range(done, len(self.results)),
                                 data_samples):
            self.results[index] = (self.target_of(sample['img_path']),
                                   *self.results[index])

    def target_of(self, img_path: str) -> str:
        """The target whose image folder holds ``img_path`` (the deepest
        one, where folders nest)."""
        targets = self.dataset_meta.get('targets') if self.dataset_meta \
            else None
        if not targets:
            raise ValueError(
                'MultiTargetIoUMetric evaluates a MultiTargetDataset: set the '
                "evaluated dataloader's dataset to "
                "dict(type='MultiTargetDataset', targets=dict(name=..., ...))")
        path = osp.abspath(img_path)
        holding = [(len(folder), name) for name, folder in targets.items()
                   if path.startswith(folder.rstrip(osp.sep) + osp.sep)]
        if not holding:
            raise ValueError(f'{img_path} is in none of the targets\' image '
                             f'folders {targets}')
        return max(holding)[1]

    def compute_metrics(self, results: list) -> Dict[str, float]:
        if self.format_only:
            return super().compute_metrics(results)
        names = list(self.dataset_meta['targets'])
        per_target: Dict[str, Dict[str, float]] = OrderedDict()
        for name in names:
            part = [result[1:] for result in results if result[0] == name]
            if not part:
                raise ValueError(f'target {name!r} had no samples to '
                                 'evaluate: is its data set empty?')
            print_log(f'{name} ({len(part)} images):', 'current')
            per_target[name] = super().compute_metrics(part)
        keys = list(per_target[names[0]])
        metrics: Dict[str, float] = OrderedDict()
        for name, values in per_target.items():
            metrics.update((f'{name}/{key}', values[key]) for key in keys)
        for key in keys:
            metrics[key] = float(
                np.round(np.mean([v[key] for v in per_target.values()]), 2))
        print_log('\n' + self.summary_table(per_target, metrics, keys),
                  'current')
        return metrics

    @staticmethod
    def summary_table(per_target: Dict[str, Dict[str, float]],
                      means: Dict[str, float], keys: List[str]) -> str:
        table = PrettyTable()
        table.field_names = ['Target'] + keys
        for name, values in per_target.items():
            table.add_row([name] + [f'{values[key]:.2f}' for key in keys])
        table.add_row([f'mean of {len(per_target)}'] +
                      [f'{means[key]:.2f}' for key in keys])
        return table.get_string()
