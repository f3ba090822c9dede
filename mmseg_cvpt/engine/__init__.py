"""Training and testing support for mmseg_cvpt.

Importing this package

* allow-lists the classes of an mmengine runner checkpoint for torch's
  ``weights_only`` loader (torch >= 2.6), so that ``--resume`` works,
* registers the ``atomic_local`` file backend used to write checkpoints,
* makes mmengine read local checkpoint files through
  :func:`~.checkpoint_files.load_from_local`, which checks them (zip
  CRC-32s, the CRC-32s of our safetensors files) and reads safetensors,
* registers every hook in mmengine's root registry (found from every
  scope: mmseg's and mmpretrain's configs name them without a prefix):
  :class:`RNGStateHook` (exact resumption, validation kept off the training
  random streams), :class:`CheckpointCheckHook` (checkpoints that do not fit
  the model are an error), :class:`AtomicCheckpointHook` (atomic
  checkpoints and ``last_checkpoint``), :class:`TunedCheckpointHook`
  (checkpoints of what was tuned), :class:`NonFiniteCheckHook` (non-finite
  steps are never applied and stop the run), :class:`TaskResultsHook`
  (classification results), :class:`WorldSizeCheckHook` (the world size
  in checkpoints; a resume under another one warns, or is an error with
  ``--strict-resume``), :class:`PromptCalibrationHook` (BPT) and
  :class:`ClassProxyHook` (DA-VPT); and
  :class:`TrainableOptimWrapperConstructor` and
  :class:`ViewCountingSegTTAModel` in mmseg's registries.

Its functions serve the tools: reading configs, CPU distributed runs and
lost peers, the pre-flight check of training inputs, finding the checkpoint
to resume from, one training per work dir (:func:`train_lock`).
"""
from .calibration import PromptCalibrationHook
from .checkpoint import (AtomicLocalBackend, allow_runner_checkpoint_globals,
                         find_resume_checkpoint, remove_stale_temporaries)
from .checkpoint_files import CheckpointFileError, register_local_loader
from .config import add_run_arguments, load_config
from .dist import (PeerLostError, end_distributed, report_lost_peers,
                   setup_cpu_distributed, start_distributed)
from .hooks import AtomicCheckpointHook, CheckpointCheckHook, RNGStateHook
from .loading import check_loaded_state
from .non_finite import NonFiniteCheckHook, NonFiniteTrainingError
from .optimizers import TrainableOptimWrapperConstructor
from .precision import (AutocastOptimWrapper, amp_optim_wrapper,
                        trace_data_dependent_shapes)
from .preflight import check_train_inputs
from .proxy_mapping import ClassProxyHook
from .results_hook import TaskResultsHook
from .run_lock import WorkDirBusyError, train_lock, work_dir_lock
from .rng import preserved_rng_states
from .task_checkpoint import TunedCheckpointHook
from .tta import ViewCountingSegTTAModel
from .world_size import (WorldSizeCheckHook, WorldSizeMismatchError,
                         set_strict_resume)

allow_runner_checkpoint_globals()
register_local_loader()

__all__ = [
    'AtomicLocalBackend', 'allow_runner_checkpoint_globals',
    'CheckpointFileError', 'register_local_loader',
    'find_resume_checkpoint', 'remove_stale_temporaries',
    'add_run_arguments', 'load_config', 'PeerLostError', 'report_lost_peers',
    'setup_cpu_distributed', 'end_distributed', 'AtomicCheckpointHook',
    'CheckpointCheckHook',
    'RNGStateHook', 'check_loaded_state', 'TrainableOptimWrapperConstructor',
    'check_train_inputs', 'TaskResultsHook', 'ViewCountingSegTTAModel',
    'PromptCalibrationHook', 'ClassProxyHook', 'preserved_rng_states',
    'TunedCheckpointHook', 'AutocastOptimWrapper', 'amp_optim_wrapper',
    'trace_data_dependent_shapes',
    'NonFiniteCheckHook', 'NonFiniteTrainingError', 'start_distributed',
    'WorkDirBusyError', 'train_lock', 'work_dir_lock', 'WorldSizeCheckHook',
    'WorldSizeMismatchError', 'set_strict_resume'
]
