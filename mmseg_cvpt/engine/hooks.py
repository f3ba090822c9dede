"""Hooks for exact resumption of training."""
import torch
from mmengine.hooks import Hook

from mmseg.registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save torch's random number generator states in checkpoints and
    restore them when training resumes, so that a resumed run draws the same
    dropout masks (prompt dropout, head dropout) as an uninterrupted one.

    mmengine reseeds all generators at start-up and, on resume, replays the
    data loader up to the resumed iteration. The replay leaves the
    generators that data augmentation uses (numpy and python ``random``, in
    the main process or seeded afresh in each worker) exactly where the
    uninterrupted run had them, but it does not advance torch's generator,
    which the model's dropout draws from during the skipped iterations. This
    hook stores that state with each checkpoint and puts it back at the
    first iteration after resuming.

    Exactness holds when nothing else draws from torch's generator between
    saving and the next iteration in the uninterrupted run: a validation run
    at the checkpoint's iteration builds a data loader, which draws one
    number. Validating at the end of training only (``val_interval ==
    max_iters``) or at iterations that are not checkpointed keeps resumption
    exact.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._pending_state = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the states of torch's CPU (and CUDA) generators."""
        state = dict(torch=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint['rng_state'] = state

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
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])
