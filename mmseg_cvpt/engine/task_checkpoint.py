"""Runner checkpoints that hold only what was tuned."""
import logging

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ..models import backbone_of, tuned_state_dict
from ..models.backbones.frozen_base import EXTRA_STATE_KEY, decode_record
from .loading import unwrap_model


@HOOKS.register_module()
class TunedCheckpointHook(Hook):
    """Leave the frozen ViT out of the runner's checkpoints.

    Before a checkpoint is written, the backbone's frozen ViT tensors are
    dropped from its ``state_dict``: it keeps the trainable parameters, the
    buffers of prompts, guidance and heads, and the backbone's record of its
    base checkpoint (path and fingerprint of the frozen tensors), from which
    any loader restores the frozen weights. Optimiser, schedulers, message
    hub and RNG states are kept as they are. ``meta['frozen_base']`` holds
    ``checkpoint``, ``fingerprint`` and ``tuned_only``.

    A model whose frozen weights come from no checkpoint (built without
    pretrained weights, like the demo) has no base: its checkpoints stay
    full, and the first save logs why.

    Args:
        tuned_only (bool): False keeps full checkpoints (the switch).
            Default True.
    """

    priority = 'NORMAL'

    def __init__(self, tuned_only: bool = True):
        if not isinstance(tuned_only, bool):
            raise ValueError('TunedCheckpointHook: tuned_only must be True or '
                             f'False, got {tuned_only!r}')
        self.tuned_only = tuned_only
        self._logged = False

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = unwrap_model(runner.model)
        _, prefix = backbone_of(model)
        full = checkpoint['state_dict']
        record = decode_record(full[prefix + EXTRA_STATE_KEY])
        tuned_only = self.tuned_only and bool(record['checkpoint'])
        if tuned_only:
            checkpoint['state_dict'] = tuned_state_dict(model, full)
        checkpoint['meta']['frozen_base'] = dict(
            checkpoint=record['checkpoint'],
            fingerprint=record['fingerprint'],
            tuned_only=tuned_only)
        if not self._logged:
            self._logged = True
            self._log(tuned_only, len(full), len(checkpoint['state_dict']),
                      record)

    def _log(self, tuned_only: bool, num_full: int, num_kept: int,
             record: dict) -> None:
        if tuned_only:
            print_log(
                f'TunedCheckpointHook: checkpoints hold {num_kept} of '
                f'{num_full} tensors; the {num_full - num_kept} frozen ViT '
                f'tensors come from {record["checkpoint"]} (fingerprint '
                f'{record["fingerprint"][:16]}...)',
                logger='current')
        elif self.tuned_only:
            print_log(
                'TunedCheckpointHook: saving full checkpoints: the frozen '
                'ViT weights come from no checkpoint (no Pretrained '
                'init_cfg), so there is no base to leave them to. Make a '
                'task package with tools/export_task.py CKPT --out TASK.pth '
                '--base-checkpoint BASE.pth',
                logger='current',
                level=logging.WARNING)
