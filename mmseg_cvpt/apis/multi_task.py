"""One frozen backbone serving several tasks.

``MultiTaskModel`` loads task packages (``tools/export_task.py``, or
tuned-only runner checkpoints) of the same frozen ViT. Each task is the
model of its package's config holding the task's tuned tensors (prompts,
head, ...); the frozen ViT tensors exist once: the first task restores them
from the base checkpoint, every further task uses the very same tensors.
Memory: one backbone plus the N packages' tensors. Tasks may tune different
parts of the ViT (e.g. its biases, ``frozen_exclude=['bias']``): a task
shares the tensors that a loaded task holds frozen too, the base checkpoint
gives it those that none does, and what it tuned is its own; the same
packages load in any order.

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
        sources = self._frozen_sources(backbone.frozen_keys())
        if len(sources) == len(backbone.frozen_keys()):
            self._share_frozen(backbone, sources, record['fingerprint'],
                               package)
            _load_checkpoint_to_model(model, checkpoint, strict=True)
        else:  # frozen weights no task holds: all from the base, then share
            backbone.base_checkpoint = self.base_checkpoint
            _load_checkpoint_to_model(model, checkpoint, strict=True)
            if sources:
                self._share_frozen(
                    backbone, sources,
                    backbone.frozen_fingerprint(sorted(sources)), package)
        model.dataset_meta = checkpoint.get('meta', {}).get('dataset_meta')
        self.tasks[name] = model.eval()
        self.active = self.active or name
        return model

    @staticmethod
    def _has_frozen_weights(model: nn.Module, checkpoint: dict) -> bool:
        backbone, prefix = backbone_of(model)
        state = checkpoint.get('state_dict', checkpoint)
        return any(prefix + k in state for k in backbone.frozen_keys())

    def _frozen_sources(self, keys: List[str]) -> Dict[str, nn.Module]:
        """For each of ``keys`` that a loaded task holds frozen, the first
        such task's backbone."""
        sources = {}
        for model in self.tasks.values():
            backbone, _ = backbone_of(model)
            for key in set(keys).intersection(backbone.frozen_keys()):
                sources.setdefault(key, backbone)
        return sources

    @staticmethod
    def _share_frozen(backbone: nn.Module, sources: Dict[str, nn.Module],
                      expected: str, package: str) -> None:
        """Give ``backbone`` the tensors of ``sources``, which must have the
        fingerprint ``expected``."""
        for source in dict.fromkeys(sources.values()):
            backbone.share_frozen_from(
                source, sorted(k for k, s in sources.items() if s is source))
        found = backbone.frozen_fingerprint(sorted(sources))
        if found != expected:
            raise ValueError(
                f'{package} was tuned on other frozen weights (fingerprint '
                f'{expected[:16]}...) than the tasks loaded '
                f'({found[:16]}...): one MultiTaskModel serves tasks of one '
                'base checkpoint')

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
