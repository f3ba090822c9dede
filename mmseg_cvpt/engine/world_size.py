"""The world size of a run, recorded in its checkpoints and checked on
resume.

Per-process batch size x world size is the effective batch size, and the
distributed sampler deals the data set out to the processes: a run resumed
with another number of processes trains on other batches in another order,
so it is not the uninterrupted run, however exactly the rest of its state
(weights, optimiser, schedulers, random states) is restored.
"""
import logging
from typing import Optional

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

#: where a checkpoint records the world size of the run that saved it
WORLD_SIZE_KEY = 'world_size'

#: the hook's type and its key in the bases' ``default_hooks``
HOOK_TYPE = 'WorldSizeCheckHook'
HOOK_KEY = 'world_size_check'


class WorldSizeMismatchError(ValueError):
    """A strict resume (``--strict-resume``) under another world size."""


def exact_resume(world_size: int) -> str:
    """'resume with N processes (the command)': how to resume exactly a
    run of ``world_size`` processes."""
    command = ('python tools/train.py CONFIG --resume' if world_size == 1
               else f'bash tools/dist_train.sh CONFIG {world_size} --resume')
    plural = 'es' if world_size > 1 else ''
    return f'resume with {world_size} process{plural} ({command})'


def batch_change(batch_size: Optional[int], saved: int, current: int) -> str:
    """'the effective batch size ... changes from A to B', with numbers
    where the per-process batch size is known."""
    if not isinstance(batch_size, int):
        return ('the effective batch size (per-process batch B x world '
                f'size) changes from B x {saved} to B x {current}')
    return (f'the effective batch size (per-process batch {batch_size} x '
            f'world size) changes from {batch_size * saved} to '
            f'{batch_size * current}')


def mismatch_warning(saved: int, current: int,
                     batch_size: Optional[int]) -> str:
    """The warning for a resume under another world size."""
    return (f'Resuming a checkpoint saved with world size {saved} in a run '
            f'with world size {current}: '
            f'{batch_change(batch_size, saved, current)} and the data order '
            'changes, so the resumed run is not the uninterrupted one. For '
            f'an exact resume, {exact_resume(saved)}; --strict-resume makes '
            'this an error.')


def mismatch_error(saved: int, current: int) -> str:
    """The one-line error of a strict resume under another world size."""
    return (f'--strict-resume: the checkpoint was saved with world size '
            f'{saved}, this run has world size {current} (another effective '
            f'batch size and data order, not an exact resume); '
            f'{exact_resume(saved)}, or without --strict-resume to continue '
            'anyway')


@HOOKS.register_module()
class WorldSizeCheckHook(Hook):
    """Record the world size in every checkpoint; on resume, say so (or,
    strict, refuse) when it differs from this run's.

    Each checkpoint the runner saves gets ``meta['world_size']``, the number
    of processes of the run. Resuming (``--resume``, ``runner.resume``) a
    checkpoint saved with another world size logs a warning that names both
    and what changes: the effective batch size (per-process batch x world
    size) and the data order, so the resumed run is not the uninterrupted
    one. ``strict=True`` (``tools/train.py --strict-resume``) makes it a
    :class:`WorldSizeMismatchError` instead, raised before training starts.

    The check runs in ``before_train``, where a resumed run is past
    iteration 0: a checkpoint loaded to start a new training (``load_from``
    without ``resume``: fine-tuning; ``tools/test.py``) is not a resume and
    is not checked. A checkpoint that records no world size (saved before
    it was recorded) resumes unchecked, with an info line.

    This is a hook of its own rather than part of :class:`RNGStateHook`:
    every base config has it (the classification base has no
    ``RNGStateHook``), and turning it off leaves the random states alone.

    Args:
        strict (bool): raise instead of warning. Defaults to False.
    """

    # after CheckpointCheckHook (VERY_HIGH) has checked the checkpoint,
    # before the other hooks take their state from it
    priority = 'HIGH'

    def __init__(self, strict: bool = False) -> None:
        if not isinstance(strict, bool):
            raise ValueError(f'{HOOK_TYPE}: strict must be True or False, '
                             f'got {strict!r}')
        self.strict = strict
        self._loaded = False
        self._saved = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Record the world size of this run."""
        checkpoint.setdefault('meta', {})[WORLD_SIZE_KEY] = runner.world_size

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the recorded world size (None: not recorded) for
        :meth:`before_train`, which knows whether this is a resume."""
        meta = checkpoint.get('meta')
        self._loaded = True
        self._saved = (meta.get(WORLD_SIZE_KEY)
                       if isinstance(meta, dict) else None)

    def before_train(self, runner) -> None:
        """On resume, compare the recorded world size with this run's.

        Called after the checkpoint is loaded and before the first
        iteration (and before the data loader replays the trained ones). A
        resumed loop starts past iteration 0 (``--resume`` or
        ``runner.resume``); a checkpoint loaded to start a new training
        (``load_from``) leaves it at 0.
        """
        if not self._loaded or runner.iter == 0:
            return
        current = runner.world_size
        if self._saved is None:
            print_log(
                f'{HOOK_TYPE}: the checkpoint records no world size (saved '
                'before it was recorded); resuming with world size '
                f'{current} unchecked.',
                logger='current')
        elif self._saved != current:
            self._mismatch(runner, self._saved, current)

    def _mismatch(self, runner, saved: int, current: int) -> None:
        """Raise (strict) or warn about a resume under another world
        size."""
        if self.strict:
            raise WorldSizeMismatchError(mismatch_error(saved, current))
        loader = runner.cfg.get('train_dataloader') or {}
        batch_size = loader.get('batch_size')
        print_log(
            mismatch_warning(saved, current, batch_size),
            logger='current',
            level=logging.WARNING)


def set_strict_resume(cfg) -> None:
    """Make a resume under another world size an error
    (``tools/train.py --strict-resume``): ``strict=True`` for every
    :class:`WorldSizeCheckHook` of ``cfg``; a config without one gets it
    in ``default_hooks``."""
    found = False
    hook_lists = [list((cfg.get('default_hooks') or {}).values()),
                  list(cfg.get('custom_hooks') or [])]
    for hooks in hook_lists:
        for hook in hooks:
            if isinstance(hook, dict) and hook.get('type') in (
                    HOOK_TYPE, WorldSizeCheckHook):
                hook['strict'] = True
                found = True
    if not found:
        if cfg.get('default_hooks') is None:
            cfg.default_hooks = {}
        cfg.default_hooks[HOOK_KEY] = dict(type=HOOK_TYPE, strict=True)
