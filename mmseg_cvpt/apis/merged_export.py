"""A LoRA checkpoint with its updates merged into the frozen weights, for
stock mmseg (``tools/export_task.py CKPT --merge --out FILE``).

The backbone becomes the family's plain frozen model with W + (alpha / r) B A
in its weights (``LoRAViT.merged_vit``): no LoRA tensors, the frozen ViT's
cost. On mmseg's ViT family the checkpoint's keys are those of mmseg's own
``VisionTransformer``, and ``FILE`` with the suffix ``.py`` is a config that
stock mmseg runs without ``custom_imports``: the model (its backbone mmseg's
``VisionTransformer``), the test and validation data, evaluators and TTA of
the training config (mmseg's ``SegTTAModel``), mmseg's default hooks.
"""
import inspect
import os.path as osp
from typing import Tuple

from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint_to_model
from mmseg.models.backbones import VisionTransformer

from ..engine.loading import IDENTITY_KEY
from ..models import backbone_of
from .task_package import build_from_checkpoint, model_meta, save_file

#: what of the training config a stock test needs (the rest: mmseg's)
STOCK_KEYS = ('default_scope', 'model', 'test_dataloader', 'test_evaluator',
              'test_cfg', 'val_dataloader', 'val_evaluator', 'val_cfg',
              'tta_model', 'tta_pipeline', 'env_cfg', 'log_processor',
              'visualizer', 'log_level')
#: mmseg's default hooks (mmseg::_base_/schedules/schedule_160k.py)
STOCK_HOOKS = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=16000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))


def stock_backbone(backbone_cfg: dict) -> dict:
    """mmseg's ``VisionTransformer`` with the ViT arguments of our backbone
    config (no weights to load: the checkpoint has them)."""
    accepted = set(inspect.signature(VisionTransformer).parameters)
    vit = {k: v for k, v in backbone_cfg.items()
           if k in accepted and k not in ('init_cfg', 'pretrained')}
    return dict(type='VisionTransformer', **vit)


def types_of(node) -> list:
    """Every ``type`` in a config (nested dicts and lists)."""
    if isinstance(node, dict):
        own = [node['type']] if isinstance(node.get('type'), str) else []
        return own + [t for value in node.values() for t in types_of(value)]
    if isinstance(node, (list, tuple)):
        return [t for value in node for t in types_of(value)]
    return []


def ours(type_name: str) -> bool:
    """Whether a registered type comes from mmseg_cvpt (which stock mmseg
    does not import); a class of ours in the place of mmseg's own of that
    name (its subclass, such as the checked ``LoadAnnotations``) is
    mmseg's."""
    import mmseg.registry
    from mmengine.registry import Registry
    for registry in vars(mmseg.registry).values():
        if isinstance(registry, Registry):
            found = registry.get(type_name) if '.' not in type_name else None
            if found is not None:
                return found.__module__.startswith('mmseg_cvpt') and not any(
                    base.__name__ == type_name
                    and base.__module__.startswith('mmseg.')
                    for base in found.__mro__[1:])
    return False


def stock_config(cfg: Config) -> Config:
    """The training config for stock mmseg (see the module docstring)."""
    stock = {k: cfg[k] for k in STOCK_KEYS if k in cfg}
    model = dict(stock['model'])
    model['backbone'] = stock_backbone(model['backbone'])
    stock.update(model=model, default_hooks=STOCK_HOOKS)
    if 'tta_model' in stock:  # ours counts the views; mmseg's is the same
        stock['tta_model'] = dict(type='SegTTAModel')
    foreign = sorted({t for t in types_of(stock) if ours(t)})
    if foreign:
        raise ValueError(
            f'--merge: the config uses {foreign}, which stock mmseg does not '
            'have; only a plain segmentor (EncoderDecoder) with mmseg\'s own '
            'data pipeline can be served without mmseg_cvpt')
    return Config(stock)


def export_merged(path: str, out: str, config=None) -> Tuple[dict, str]:
    """Write the merged full checkpoint of the LoRA checkpoint at ``path``
    to ``out`` (and, on mmseg's ViT family, the stock config beside it);
    returns (what was written, the config's path or '')."""
    model, checkpoint, cfg = build_from_checkpoint(path, config)
    backbone, prefix = backbone_of(model)
    if not hasattr(backbone, 'merged_vit'):
        raise ValueError(
            f'--merge: the backbone is a {type(backbone).__name__}, which has '
            'no low-rank updates to merge (LoRAViT has); export it as a task '
            'package or with --full')
    _load_checkpoint_to_model(model, checkpoint, strict=True)
    vit = backbone.merged_vit()
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith(prefix)}
    state.update({prefix + k: v for k, v in vit.state_dict().items()})
    config_path = ''
    if type(vit).__name__ == 'MMSegViT':
        stock = stock_config(cfg)
        meta = dict(model_meta(stock, model))
        config_path = osp.splitext(out)[0] + '.py'
        stock.dump(config_path)
    else:  # the timm family: served by mmseg_cvpt's TimmViT, no LoRA
        merged_cfg = cfg.copy()
        merged_cfg.model.backbone = dict(
            type='VPTViT', num_prompts=0, vit=cfg.model.backbone.vit)
        meta = dict(model_meta(merged_cfg, model))
    meta.pop(IDENTITY_KEY)  # the merged model is no LoRA model
    if 'dataset_meta' in checkpoint.get('meta', {}):
        meta['dataset_meta'] = checkpoint['meta']['dataset_meta']
    package = dict(meta=meta, state_dict=state)
    save_file(package, out)
    return package, config_path
