"""Registries of the ``mmseg_cvpt`` scope, children of mmseg's.

A config that inherits ``mmseg_cvpt::...`` gets ``_scope_='mmseg_cvpt'`` on
the typed dicts it takes from our configs (mmengine tags every dict of an
external base with the base's scope). mmengine then builds those dicts in the
registries of scope ``mmseg_cvpt``, which it finds by importing
``mmseg_cvpt.registry``. These registries are children of mmseg's, so they
resolve everything mmseg registers, and our modules, which register in
mmseg's registries directly (``mmseg.registry.MODELS`` and friends).

Our segmentation configs therefore build the same objects whether they are
used from this repository (scope ``mmseg``) or inherited from elsewhere.
"""
from mmengine.registry import Registry
from mmseg import registry as mmseg_registry
from mmseg.utils import register_all_modules

SCOPE = 'mmseg_cvpt'

# look-ups in a child search its parents' registered modules, but only the
# child's own ``locations`` are imported on demand: import mmseg's now
register_all_modules(init_default_scope=False)


def _child(parent: Registry) -> Registry:
    """A ``mmseg_cvpt`` registry under ``parent`` that imports our modules."""
    return Registry(
        parent.name, parent=parent, scope=SCOPE, locations=['mmseg_cvpt'])


RUNNERS = _child(mmseg_registry.RUNNERS)
RUNNER_CONSTRUCTORS = _child(mmseg_registry.RUNNER_CONSTRUCTORS)
LOOPS = _child(mmseg_registry.LOOPS)
HOOKS = _child(mmseg_registry.HOOKS)
DATASETS = _child(mmseg_registry.DATASETS)
DATA_SAMPLERS = _child(mmseg_registry.DATA_SAMPLERS)
TRANSFORMS = _child(mmseg_registry.TRANSFORMS)
MODELS = _child(mmseg_registry.MODELS)
MODEL_WRAPPERS = _child(mmseg_registry.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child(mmseg_registry.WEIGHT_INITIALIZERS)
OPTIMIZERS = _child(mmseg_registry.OPTIMIZERS)
OPTIM_WRAPPERS = _child(mmseg_registry.OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child(mmseg_registry.OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child(mmseg_registry.PARAM_SCHEDULERS)
METRICS = _child(mmseg_registry.METRICS)
EVALUATOR = _child(mmseg_registry.EVALUATOR)
TASK_UTILS = _child(mmseg_registry.TASK_UTILS)
VISUALIZERS = _child(mmseg_registry.VISUALIZERS)
VISBACKENDS = _child(mmseg_registry.VISBACKENDS)
LOG_PROCESSORS = _child(mmseg_registry.LOG_PROCESSORS)
INFERENCERS = _child(mmseg_registry.INFERENCERS)
