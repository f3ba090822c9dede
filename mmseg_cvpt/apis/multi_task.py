"""One frozen backbone serving several tasks.

``MultiTaskModel`` loads task packages (``tools/export_task.py``, or
tuned-only runner checkpoints) of the same frozen ViT. Each task is the
model of its package's config holding the task's tuned tensors (prompts,
head, ...); the frozen ViT tensors exist once: the first task restores them
from the base checkpoint, every further task uses the very same tensors.
Memory: one backbone plus the N packages' tensors.

``predict`` runs a batch whose images belong to different tasks: the
images of each task go through that task's model (its prompts and head),
the results come back in the batch's order, equal to running each task's
model alone::

    from mmseg_cvpt.apis import MultiTaskModel
    tasks = MultiTaskModel(dict(dtd='dtd.pth', cub='cub.pth'))
    results = tasks.predict(dict(inputs=images), tasks=['cub', 'dtd', 'cub'])
    tasks.switch('dtd')
    results = tasks.predict(dict(inputs=images))  # all with dtd
"""
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.runner.checkpoint import _load_checkpoint_to_model
from torch import nn

from ..models import backbone_of
from .task_package import build_from_checkpoint, frozen_record


class MultiTaskModel(nn.Module):
    """Task packages on one shared frozen backbone.

    Args:
        tasks (dict, optional): task name -> package path, added in order.
        base_checkpoint (str, optional): the base checkpoint, when it is
            not at the path the packages record.
    """

    def __init__(self,
                 tasks: Optional[Dict[str, str]] = None,
                 base_checkpoint: Optional[str] = None):
        super().__init__()
        self.base_checkpoint = base_checkpoint
        self.tasks = nn.ModuleDict()
        self.active: Optional[str] = None
        for name, package in (tasks or {}).items():
            self.add_task(name, package)

    def add_task(self, name: str, package: str,
                 config: Optional[str] = None) -> nn.Module:
        """Load the task package at ``package`` as task ``name``, on the
        frozen tensors of the tasks loaded so far; returns its model."""
        if name in self.tasks:
            raise KeyError(f'task {name!r} is loaded already')
        model, checkpoint, _ = build_from_checkpoint(package, config)
        backbone, _ = backbone_of(model)
        record = frozen_record(model, checkpoint)
        if record is None or not record['fingerprint'] or \
                self._has_frozen_weights(model, checkpoint):
            raise ValueError(
                f'{package} is not a task package (tuned tensors and the '
                'record of a base checkpoint); make one with '
                f'tools/export_task.py {package} --out TASK.pth')
        if self.tasks:
            self._share_backbone(backbone, record, package)
        else:
            backbone.base_checkpoint = self.base_checkpoint
        _load_checkpoint_to_model(model, checkpoint, strict=True)
        model.dataset_meta = checkpoint.get('meta', {}).get('dataset_meta')
        self.tasks[name] = model.eval()
        self.active = self.active or name
        return model

    @staticmethod
    def _has_frozen_weights(model: nn.Module, checkpoint: dict) -> bool:
        backbone, prefix = backbone_of(model)
        state = checkpoint.get('state_dict', checkpoint)
        return any(prefix + k in state for k in backbone.frozen_keys())

    def _share_backbone(self, backbone: nn.Module, record: dict,
                        package: str) -> None:
        shared, _ = backbone_of(next(iter(self.tasks.values())))
        backbone.share_frozen_from(shared)
        if backbone.frozen_fingerprint() != record['fingerprint']:
            raise ValueError(
                f'{package} was tuned on other frozen weights (fingerprint '
                f'{record["fingerprint"][:16]}...) than the tasks loaded '
                f'({shared.frozen_fingerprint()[:16]}...): one '
                'MultiTaskModel serves tasks of one base checkpoint')

    def switch(self, name: str) -> nn.Module:
        """Make ``name`` the active task; returns its model."""
        self.active = self._check_names([name])[0]
        return self.tasks[name]

    def _check_names(self, names: Sequence[str]) -> List[str]:
        unknown = sorted(set(names) - set(self.tasks))
        if unknown:
            raise KeyError(f'unknown tasks {unknown}; loaded: '
                           f'{list(self.tasks)}')
        return list(names)

    @torch.no_grad()
    def predict(self, data: dict,
                tasks: Optional[Sequence[str]] = None) -> list:
        """Predictions for a batch (``test_step``'s input: ``inputs`` and
        ``data_samples`` lists), image i by task ``tasks[i]`` (default: the
        active task for all); in the batch's order."""
        count = len(data['inputs'])
        names = self._check_names(tasks or [self.active] * count)
        if len(names) != count:
            raise ValueError(f'{len(names)} task names for {count} images')
        results = [None] * count
        for name in dict.fromkeys(names):
            indices = [i for i, task in enumerate(names) if task == name]
            part = {
                key: None if value is None else [value[i] for i in indices]
                for key, value in data.items()
            }
            for i, result in zip(indices, self.tasks[name].test_step(part)):
                results[i] = result
        return results
