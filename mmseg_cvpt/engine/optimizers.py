"""An optimiser constructor for frozen backbones."""
import logging

from mmengine.logging import MMLogger, print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS

from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS

from .loading import unwrap_model


class _DropFrozenParamWarnings(logging.Filter):
    """Drop mmengine's "... is skipped since its requires_grad=False"."""

    def filter(self, record: logging.LogRecord) -> bool:
        return 'requires_grad=False' not in record.getMessage()


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Build an optimiser over the trainable parameters only.

    Same options as :class:`~mmengine.optim.DefaultOptimWrapperConstructor`
    (``paramwise_cfg`` included), but parameters with ``requires_grad=False``
    never reach the optimiser, and instead of mmengine's warning per frozen
    parameter (hundreds of lines for a frozen ViT) one line reports how many
    parameters are trained and how many are frozen.
    """

    def __call__(self, model):
        module = unwrap_model(model)
        params = list(module.parameters())
        trainable = [p for p in params if p.requires_grad]
        num_frozen = sum(p.numel() for p in params if not p.requires_grad)
        print_log(
            f'Optimising {sum(p.numel() for p in trainable):,} trainable '
            f'parameters; {num_frozen:,} frozen parameters are left out.',
            logger='current')
        if self.paramwise_cfg:
            logger = MMLogger.get_current_instance()
            log_filter = _DropFrozenParamWarnings()
            logger.addFilter(log_filter)
            try:
                return super().__call__(model)
            finally:
                logger.removeFilter(log_filter)
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cfg['params'] = trainable
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        optim_wrapper_cfg = self.optim_wrapper_cfg.copy()
        optim_wrapper_cfg.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(
            optim_wrapper_cfg, default_args=dict(optimizer=optimizer))
