"""The 24 classification tasks (VTAB-1K and FGVC) and their reference recipe.

A classification config names its task with a top-level ``task`` field
(``--cfg-options task=dtd``). mmengine cannot compute config fields from
command-line options at parse time, so :func:`resolve_task` fills the
task-dependent fields (data root and splits, number of classes, prompt count,
learning rate) once the options are merged. ``tools/train.py``,
``tools/test.py`` and ``tools/misc/print_config.py`` call it.

Prompt counts and learning rates are CVPT's reference recipe: VTAB-1K from
the paper's per-task table, FGVC from the reference code's per-data-set
configs (the paper gives FGVC prompt counts only).
"""
import os.path as osp
from collections import OrderedDict
from typing import NamedTuple, Optional

from mmengine.config import Config

VTAB_GROUPS = OrderedDict(
    natural=('cifar', 'caltech101', 'dtd', 'oxford_flowers102',
             'oxford_iiit_pet', 'svhn', 'sun397'),
    specialized=('patch_camelyon', 'eurosat', 'resisc45',
                 'diabetic_retinopathy'),
    structured=('clevr_count', 'clevr_dist', 'dmlab', 'kitti', 'dsprites_loc',
                'dsprites_ori', 'smallnorb_azi', 'smallnorb_ele'))
FGVC_TASKS = ('cub', 'nabirds', 'oxford_flowers', 'stanford_dogs',
              'stanford_cars')


class Task(NamedTuple):
    """One task of the benchmark.

    Attributes:
        name (str): The name used in ``task=NAME``.
        benchmark (str): 'vtab' or 'fgvc'.
        group (str): 'natural', 'specialized', 'structured' or 'fgvc'.
        num_classes (int): Number of classes.
        num_prompts (int): Reference prompt count P.
        lr (float): Reference learning rate (batch 32).
        folder (str): The task's folder under ``vtab_root`` / ``fgvc_root``.
        img_dir (str): FGVC only: the image folder inside the task folder, as
            in VPT's release (image paths in the json files are relative to
            it).
    """
    name: str
    benchmark: str
    group: str
    num_classes: int
    num_prompts: int
    lr: float
    folder: str
    img_dir: str = ''


def _vtab(name, num_classes, num_prompts, lr):
    group = next(g for g, names in VTAB_GROUPS.items() if name in names)
    return Task(name, 'vtab', group, num_classes, num_prompts, lr, name)


def _fgvc(name, num_classes, num_prompts, lr, folder, img_dir):
    return Task(name, 'fgvc', 'fgvc', num_classes, num_prompts, lr, folder,
                img_dir)


TASKS = OrderedDict((task.name, task) for task in (
    # VTAB-1K, Natural
    _vtab('cifar', 100, 10, 1e-3),
    _vtab('caltech101', 102, 200, 1e-3),
    _vtab('dtd', 47, 10, 1e-3),
    _vtab('oxford_flowers102', 102, 5, 2e-3),
    _vtab('oxford_iiit_pet', 37, 5, 1e-3),
    _vtab('svhn', 10, 5, 1e-2),
    _vtab('sun397', 397, 10, 2e-3),
    # VTAB-1K, Specialized
    _vtab('patch_camelyon', 2, 1, 1e-2),
    _vtab('eurosat', 10, 5, 5e-3),
    _vtab('resisc45', 45, 10, 5e-3),
    _vtab('diabetic_retinopathy', 5, 5, 5e-3),
    # VTAB-1K, Structured
    _vtab('clevr_count', 8, 20, 1e-3),
    _vtab('clevr_dist', 6, 50, 1e-3),
    _vtab('dmlab', 6, 200, 2e-3),
    _vtab('kitti', 4, 20, 5e-3),
    _vtab('dsprites_loc', 16, 20, 5e-3),
    _vtab('dsprites_ori', 16, 5, 5e-3),
    _vtab('smallnorb_azi', 18, 50, 5e-3),
    _vtab('smallnorb_ele', 9, 50, 1e-3),
    # FGVC, folders and image folders as in VPT's release
    _fgvc('cub', 200, 5, 5e-4, 'CUB_200_2011', 'images'),
    _fgvc('nabirds', 555, 200, 2e-4, 'nabirds', 'images'),
    _fgvc('oxford_flowers', 102, 5, 1e-3, 'OxfordFlower', ''),
    _fgvc('stanford_dogs', 120, 10, 2e-4, 'Stanford-dogs', 'Images'),
    _fgvc('stanford_cars', 196, 100, 2e-3, 'Stanford-cars', ''),
))

# (train, evaluation) splits: model selection on the validation split; the
# test split is read only in the final mode.
SPLITS = {
    ('vtab', False): ('train800', 'val200'),
    ('vtab', True): ('train800val200', 'test'),
    ('fgvc', False): ('train', 'val'),
    ('fgvc', True): ('trainval', 'test'),
}
DATASET_TYPES = dict(vtab='VTAB1k', fgvc='FGVC')


def get_task(name: str) -> Task:
    """The task called ``name``; the error lists the valid names."""
    if name not in TASKS:
        raise ValueError(f'unknown task {name!r}; valid tasks: '
                       f'{", ".join(TASKS)}')
    return TASKS[name]


def _fill(cfg: dict, key: str, value) -> None:
    """Set ``cfg[key]`` unless the config (or the command line) set it."""
    if cfg.get(key) is None:
        cfg[key] = value


def resolve_task(cfg: Config) -> Optional[Task]:
    """Fill the task-dependent fields of a classification config in place.

    A no-op (returns None) for configs without a ``task`` field, such as the
    segmentation configs. Otherwise it reads ``task``, ``final``,
    ``vtab_root``, ``fgvc_root`` and ``warmup_lr`` and sets:

    - every data loader's dataset type, ``data_root``, ``split`` (and FGVC's
      ``img_dir``) and ``num_classes``: ``final=False`` trains on train800
      (FGVC: train) and validates and tests on val200 (FGVC: val);
      ``final=True`` trains on train800val200 (FGVC: train + val), runs no
      validation (so nothing is selected on the test split) and tests on
      the test split;
    - ``model.head.num_classes``;
    - ``model.backbone.vit.num_prompts`` and ``optim_wrapper.optimizer.lr``
      where they are None: values set in the config or with
      ``--cfg-options`` win over the table;
    - the warm-up ``LinearLR``'s ``start_factor`` so that the warm-up starts
      at ``warmup_lr``;
    - from ``benchmark_defaults`` (``dict(vtab={dotted.key: value}, fgvc=
      {...})``, optional) the values of the task's benchmark, where the
      config holds None (e.g. DA-VPT's loss weights).

    Returns:
        Task | None: the resolved task.
    """
    if 'task' not in cfg:
        return None
    if cfg.task is None:
        raise ValueError('choose a task with --cfg-options task=NAME; valid '
                         f'tasks: {", ".join(TASKS)}')
    task = get_task(cfg.task)
    final = bool(cfg.get('final', False))
    root = cfg.vtab_root if task.benchmark == 'vtab' else cfg.fgvc_root
    train_split, eval_split = SPLITS[task.benchmark, final]
    dataset = dict(
        type=DATASET_TYPES[task.benchmark],
        data_root=osp.join(root, task.folder),
        num_classes=task.num_classes)
    if task.benchmark == 'fgvc':
        dataset['img_dir'] = task.img_dir

    cfg.train_dataloader.dataset.update(dataset, split=train_split)
    cfg.test_dataloader.dataset.update(dataset, split=eval_split)
    if final:
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
        cfg.default_hooks.checkpoint.pop('save_best', None)
    else:
        cfg.val_dataloader.dataset.update(dataset, split=eval_split)

    cfg.model.head.num_classes = task.num_classes
    vit = cfg.model.backbone.get('vit', {})
    if 'num_prompts' in vit:
        _fill(vit, 'num_prompts', task.num_prompts)
    _fill(cfg.optim_wrapper.optimizer, 'lr', task.lr)
    defaults = (cfg.get('benchmark_defaults') or {}).get(task.benchmark, {})
    for path, value in defaults.items():
        *parents, key = path.split('.')
        node = cfg
        for parent in parents:
            node = node[parent]
        _fill(node, key, value)
    if cfg.get('warmup_lr') is not None:
        lr = cfg.optim_wrapper.optimizer.lr
        for scheduler in cfg.param_scheduler:
            if scheduler.type == 'LinearLR':
                scheduler.start_factor = cfg.warmup_lr / lr
                break
    return task
