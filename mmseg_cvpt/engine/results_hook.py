"""Record a classification run's result in ``{work_dir}/results.json``."""
import json
import os
import os.path as osp

from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from .loading import unwrap_model


@HOOKS.register_module()
class TaskResultsHook(Hook):
    """Write the task, its accuracy and the parameter counts of a run.

    ``results.json`` holds ``task``, ``method`` (the ViT type), ``final``,
    ``num_prompts``, ``lr``, ``params`` (``total``, ``trainable``,
    ``backbone_trainable``) and one entry per evaluated split, e.g.
    ``"val200": {"top1": ..., "best_top1": ..., "epoch": ...}`` after each
    validation and ``"test": {"top1": ...}`` after testing. Training starts
    a new file; testing adds its entry to the file of the training run in
    the same folder. ``tools/analysis/vtab_fgvc_table.py`` reads it.

    Args:
        metric (str): The metric to record. Defaults to 'accuracy/top1'.
        filename (str): Defaults to 'results.json'.
    """
    priority = 'LOW'

    def __init__(self,
                 metric: str = 'accuracy/top1',
                 filename: str = 'results.json'):
        self.metric = metric
        self.filename = filename

    def _path(self, runner) -> str:
        return osp.join(runner.work_dir, self.filename)

    def _run_info(self, runner) -> dict:
        cfg = runner.cfg
        model = unwrap_model(runner.model)
        backbone = cfg.model.backbone
        vit = backbone.get('vit', backbone)
        return dict(
            task=cfg.get('task'),
            method=vit.type,
            final=bool(cfg.get('final', False)),
            num_prompts=vit.get('num_prompts'),
            lr=cfg.optim_wrapper.optimizer.get('lr'),
            params=dict(
                total=sum(p.numel() for p in model.parameters()),
                trainable=sum(p.numel() for p in model.parameters()
                              if p.requires_grad),
                backbone_trainable=sum(
                    p.numel() for p in model.backbone.parameters()
                    if p.requires_grad)))

    def _update(self, runner, split: str, metrics: dict, **extra) -> None:
        if not metrics or self.metric not in metrics:
            return
        results = {}
        if osp.isfile(self._path(runner)):
            with open(self._path(runner)) as f:
                results = json.load(f)
        results.update(self._run_info(runner))
        entry = results.get(split, {})
        top1 = float(metrics[self.metric])
        entry.update(top1=top1, **extra)
        if 'epoch' in extra:
            entry['best_top1'] = max(top1, entry.get('best_top1', top1))
        results[split] = entry
        with open(self._path(runner), 'w') as f:
            json.dump(results, f, indent=2)

    @master_only
    def before_train(self, runner) -> None:
        if osp.isfile(self._path(runner)):
            os.remove(self._path(runner))

    @master_only
    def after_val_epoch(self, runner, metrics=None) -> None:
        split = runner.cfg.val_dataloader.dataset.get('split', 'val')
        self._update(runner, split, metrics, epoch=runner.epoch)

    @master_only
    def after_test_epoch(self, runner, metrics=None) -> None:
        split = runner.cfg.test_dataloader.dataset.get('split', 'test')
        self._update(runner, split, metrics)
