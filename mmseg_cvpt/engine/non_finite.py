"""Training steps with a non-finite loss or gradient are never applied."""
import logging
import math

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import HOOKS

from .loading import key_examples, unwrap_model

_REMEDY = ('lower the learning rate (optim_wrapper.optimizer.lr) or clip the '
           'gradients (optim_wrapper.clip_grad=dict(max_norm=1.0))')


class NonFiniteTrainingError(RuntimeError):
    """A training step had a non-finite loss or gradient, or a checkpoint
    would have held non-finite tensors."""


def _any_rank(flag: bool, device) -> bool:
    """Whether ``flag`` is set on any rank (itself outside distributed
    runs): every rank then takes the same decision."""
    flags = torch.tensor([float(flag)], device=device)
    all_reduce(flags, op='max')
    return bool(flags.item())


def _non_finite_grads(names: dict, optimizer) -> list:
    """Names of the optimised parameters whose gradient is not finite.

    A finite sum of each gradient proves it finite (inf and nan propagate)
    at a quarter of the cost of ``isfinite`` per tensor; only when a sum is
    not (a nan, or a sum that overflows) are the gradients looked at.
    """
    params = [
        p for group in optimizer.param_groups for p in group['params']
        if p.grad is not None
    ]
    if not params or torch.isfinite(
            torch.stack([p.grad.sum() for p in params])).all():
        return []
    return [
        names.get(id(p), '?') for p in params
        if not torch.isfinite(p.grad).all()
    ]


@HOOKS.register_module()
class NonFiniteCheckHook(Hook):
    """Never apply a training step whose loss or gradient is not finite,
    and stop the run with an error naming the iteration and the loss terms.

    The hook wraps the runner's optimizer wrapper (``update_params`` and
    ``step``, whatever its class) at the start of training: a non-finite
    loss (on any rank), or a non-finite gradient when the optimizer would
    step, leaves the parameters and the optimizer state as they were (no
    step; the gradients are zeroed as after every step). Under
    gradient accumulation a non-finite loss drops the whole window. Under
    ``AmpOptimWrapper`` only the loss is checked: inf / nan gradients are
    part of dynamic loss scaling there, and GradScaler skips those steps
    itself. After the iteration the hook raises
    :class:`NonFiniteTrainingError`, or, while fewer than ``max_skips``
    steps were skipped, logs a warning and training goes on. Checkpoints
    whose model tensors are not finite are refused too.

    Args:
        max_skips (int): How many non-finite steps may be skipped before
            the run stops. Defaults to 0 (stop at the first).
    """

    priority = 'ABOVE_NORMAL'  # before the logger and the checkpoint hooks

    def __init__(self, max_skips: int = 0) -> None:
        if isinstance(max_skips, bool) or not isinstance(max_skips, int) \
                or max_skips < 0:
            raise ValueError('NonFiniteCheckHook: max_skips must be an '
                             f'integer >= 0, got {max_skips!r}')
        self.max_skips = max_skips
        self.skipped = 0
        self._loss_failed = False  # this iteration
        self._window_failed = False  # this accumulation window
        self._bad_grads = []

    def before_train(self, runner) -> None:
        """Wrap the optimizer wrapper's ``update_params`` and ``step``."""
        wrapper = runner.optim_wrapper
        model = unwrap_model(runner.model)
        names = {id(p): name for name, p in model.named_parameters()}
        check_grads = not isinstance(wrapper, AmpOptimWrapper)
        update_params, step = wrapper.update_params, wrapper.step

        def checked_update_params(loss, *args, **kwargs):
            self._loss_failed = _any_rank(
                not torch.isfinite(loss).all(), loss.device)
            self._window_failed |= self._loss_failed
            update_params(loss, *args, **kwargs)

        def checked_step(**kwargs):
            if check_grads:
                self._bad_grads = _non_finite_grads(names, wrapper.optimizer)
            if not (self._window_failed or self._bad_grads):
                step(**kwargs)
            self._window_failed = False

        wrapper.update_params = checked_update_params
        wrapper.step = checked_step

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        """Raise, or warn while skips are left, after a non-finite step."""
        if not (self._loss_failed or self._bad_grads):
            return
        what = self._describe(runner.iter + 1, outputs or {})
        self._loss_failed, self._bad_grads = False, []
        if self.skipped >= self.max_skips:
            raise NonFiniteTrainingError(
                f'{what}. The update was not applied and the run stops '
                f'({self.skipped} non-finite steps skipped before, '
                f'max_skips={self.max_skips}): {_REMEDY}, or let a few steps '
                'be skipped: --cfg-options '
                'default_hooks.non_finite.max_skips=N'
            )
        self.skipped += 1
        print_log(
            f'{what}: the update was skipped ({self.skipped} of '
            f'max_skips={self.max_skips}).',
            logger='current',
            level=logging.WARNING)

    def _describe(self, iteration: int, log_vars: dict) -> str:
        """'Non-finite training step at iteration N: ...' with the loss
        terms and gradients that were not finite."""
        terms = {name: float(value) for name, value in log_vars.items()}
        bad = [f'{n}={v}' for n, v in terms.items() if not math.isfinite(v)]
        if len(bad) > 1:  # the sum `loss` adds nothing to its terms
            bad = [term for term in bad if not term.startswith('loss=')]
        parts = []
        if self._loss_failed:
            parts.append('loss terms ' + ', '.join(bad) if bad else
                         'a non-finite loss on another rank')
        if self._bad_grads:
            parts.append('non-finite gradients of ' +
                         key_examples(self._bad_grads))
        return (f'Non-finite training step at iteration {iteration}: ' +
                '; '.join(parts))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse to write a checkpoint whose model tensors are not
        finite."""
        bad = [
            name for name, value in checkpoint['state_dict'].items()
            if torch.is_tensor(value) and value.is_floating_point()
            and not torch.isfinite(value).all()
        ]
        if bad:
            raise NonFiniteTrainingError(
                'Refusing to save the checkpoint of iteration '
                f'{checkpoint["meta"].get("iter")}: {len(bad)} model '
                f'tensors are not finite: {key_examples(bad)}. Training '
                'diverged outside the optimizer step (e.g. BatchNorm running '
                f'statistics of exploding activations) or a hook wrote them: '
                f'{_REMEDY}')
