"""Hooks for exact resumption and for checkpoints that can be trusted."""
import logging

import mmengine.hooks.checkpoint_hook as checkpoint_hook_module
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from .checkpoint import atomic_text_writes
from .config_data import CONFIG_DATA_KEY, config_to_data
from .loading import (IDENTITY_KEY, check_loaded_state, check_model_identity,
                      model_identity)
from .rng import rng_states, set_rng_states


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Make ``--resume`` continue exactly: keep validation off the training
    random streams, and save torch's generator states in checkpoints.

    mmengine reseeds all generators at start-up and, on resume, replays the
    data loader up to the resumed iteration. The replay leaves the
    generators that data augmentation uses (numpy and python ``random``, in
    the main process or seeded afresh in each worker) exactly where the
    uninterrupted run had them, but it does not advance torch's generator,
    which the model's dropout draws from during the skipped iterations. This
    hook stores that state with each checkpoint and puts it back at the
    first iteration after resuming.

    A validation run draws from the generators too (building its data
    loader's iterator draws from torch's, a pipeline may draw from numpy's),
    and mmengine saves a checkpoint *before* the validation of the same
    iteration, which a resumed run does not repeat. The hook therefore saves
    the torch, numpy and python states before each validation and restores
    them after it: validation never changes what training draws, and a
    checkpoint taken at a validated iteration (every 16k iterations in the
    ViT-B configs) resumes exactly. A checkpoint saved during validation
    (``save_best``) stores the states training will continue from.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._pending_state = None
        self._train_state = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the states of torch's CPU (and CUDA) generators."""
        state = self._train_state or rng_states()
        checkpoint['rng_state'] = {
            key: state[key]
            for key in ('torch', 'cuda') if key in state
        }

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the saved states for the first training iteration."""
        self._pending_state = checkpoint.get('rng_state')

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        """Restore the saved states once a resumed loop has started.

        A checkpoint loaded to start a new training (``load_from`` without
        ``resume``, the loop starts at iteration 0) keeps the fresh seed.
        """
        state, self._pending_state = self._pending_state, None
        if state is None or runner.iter == 0:
            return
        set_rng_states(state)

    def before_val(self, runner) -> None:
        """Save the training states of all generators."""
        self._train_state = rng_states()

    def after_val(self, runner) -> None:
        """Put training's states back, undoing validation's draws."""
        state, self._train_state = self._train_state, None
        if state is not None:
            set_rng_states(state)


@HOOKS.register_module()
class CheckpointCheckHook(Hook):
    """Refuse a checkpoint that does not fit the model.

    mmengine loads ``load_from`` with ``strict=False``: a checkpoint of
    another architecture loads partly, the rest stays random, and only the
    log says so. This hook checks every checkpoint the runner loads
    (``load_from``, ``--resume``, ``tools/test.py``) before it reaches the
    model: its recorded model identity
    (:func:`~.loading.check_model_identity`: a checkpoint of another method
    is an error, also one to start a new training from, whose prompts would
    be read by another method) and its tensors
    (:func:`~.loading.check_loaded_state`). ``meta['config']``, Python text
    that mmengine's resume would run, is dropped unread.

    Each checkpoint the runner saves gets ``meta['model_identity']`` and the
    config as data, ``meta['cfg_dict']`` (see ``.config_data``).

    Args:
        allow_new (bool): whether weights a new training initialises itself
            (heads, prompt modules) may be missing, as when training starts
            from a backbone checkpoint. ``tools/test.py`` sets False: every
            weight must be in the checkpoint. Defaults to True.
    """

    priority = 'VERY_HIGH'

    def __init__(self, allow_new: bool = True) -> None:
        self.allow_new = allow_new

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Record the model's identity and the config as data."""
        meta = checkpoint.setdefault('meta', {})
        meta[IDENTITY_KEY] = model_identity(runner.model)
        try:
            meta[CONFIG_DATA_KEY] = config_to_data(runner.cfg)
        except ValueError as error:
            print_log(f'CheckpointCheckHook: the config is not stored as '
                      f'data ({error}): loading the checkpoint outside the '
                      'runner needs --config CONFIG',
                      logger='current', level=logging.WARNING)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Raise if the checkpoint is of another model or its weights do
        not fit the model."""
        meta = checkpoint.get('meta')
        if isinstance(meta, dict) and meta.pop('config', None) is not None:
            print_log('CheckpointCheckHook: ignored the checkpoint\'s '
                      "meta['config'] (Python text; not run)",
                      logger='current', level=logging.WARNING)
        check_model_identity(runner.model, checkpoint)
        check_loaded_state(runner.model,
                           checkpoint.get('state_dict', checkpoint),
                           self.allow_new)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` with atomic writes of everything.

    Checkpoints go through the ``atomic_local`` file backend (the default
    ``backend_args`` here), and ``work_dir/last_checkpoint``, which mmengine
    rewrites in place (a kill between truncating and writing leaves it
    empty), is replaced atomically too. Same arguments as
    ``CheckpointHook``.
    """

    def __init__(self, *args, backend_args=None, **kwargs) -> None:
        super().__init__(
            *args,
            backend_args=backend_args or dict(backend='atomic_local'),
            **kwargs)

    def _save_checkpoint_with_step(self, runner, step, meta):
        with atomic_text_writes(checkpoint_hook_module):
            super()._save_checkpoint_with_step(runner, step, meta)
