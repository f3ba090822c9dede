"""Training and testing support for mmseg_cvpt.

Importing this package

* allow-lists the classes of an mmengine runner checkpoint for torch's
  ``weights_only`` loader (torch >= 2.6), so that ``--resume`` works,
* registers the ``atomic_local`` file backend used to write checkpoints,
* registers :class:`PromptCalibrationHook`, :class:`ClassProxyHook` and
  :class:`TunedCheckpointHook` in mmengine's root registry
  (found from every scope) and :class:`RNGStateHook`, :class:`TrainableOptimWrapperConstructor`
  and :class:`ViewCountingSegTTAModel` in mmseg's registries and
  :class:`TaskResultsHook` in mmpretrain's.
"""
from .calibration import PromptCalibrationHook
from .proxy_mapping import ClassProxyHook
from .checkpoint import AtomicLocalBackend, allow_runner_checkpoint_globals
from .config import add_run_arguments, load_config
from .dist import setup_cpu_distributed
from .hooks import RNGStateHook
from .optimizers import TrainableOptimWrapperConstructor
from .preflight import check_train_inputs
from .results_hook import TaskResultsHook
from .task_checkpoint import TunedCheckpointHook
from .training_images import preserved_rng_states
from .tta import ViewCountingSegTTAModel

allow_runner_checkpoint_globals()

__all__ = [
    'AtomicLocalBackend', 'allow_runner_checkpoint_globals', 'add_run_arguments',
    'load_config',
    'setup_cpu_distributed', 'RNGStateHook',
    'TrainableOptimWrapperConstructor', 'check_train_inputs',
    'TaskResultsHook', 'ViewCountingSegTTAModel', 'PromptCalibrationHook',
    'ClassProxyHook', 'preserved_rng_states', 'TunedCheckpointHook'
]
