"""Mixed precision (bf16 autocast where the device runs it, fp16
otherwise) and the compiled train step.

``amp_optim_wrapper(cfg.optim_wrapper)`` is what ``tools/train.py --amp``
does to a config's optimiser wrapper:

* a GPU with bf16 (``torch.cuda.is_bf16_supported()``): mmengine's
  ``AmpOptimWrapper`` with ``dtype='bfloat16'``;
* an older GPU: ``AmpOptimWrapper`` in fp16 with dynamic loss scaling;
* no GPU: :class:`AutocastOptimWrapper`, bf16 autocast on the CPU (mmengine's
  ``AmpOptimWrapper`` refuses CPUs).

bf16 has float32's exponent range, so it needs no loss scaling: the
``AmpOptimWrapper``'s dynamic scaler then never finds an overflow and
stays a no-op. Under autocast the matrix products run in the low precision
and the parameters, optimiser states and reductions stay float32; our
precision-critical parts leave autocast themselves (BPT's statistics in
float64, DA-VPT's losses in float32).

``trace_data_dependent_shapes()`` is what ``tools/train.py`` does before a
compiled run (``--compile`` or the config's ``compile``): mmseg's decode
heads compute their accuracy with a boolean mask (``accuracy``: the pixels
that are not ``ignore_index``), whose output shape depends on the data.
Dynamo cannot break the graph there inside the optimiser wrapper's
(autocast) context, so it would give up the whole train step and retrace
it frame by frame, each nested call again (a third of a tiny run's time);
traced as a dynamic shape, the forward is one graph.
"""
from contextlib import contextmanager
from typing import Union

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

MIXED_WRAPPERS = ('AmpOptimWrapper', 'AutocastOptimWrapper')


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward runs under ``torch.autocast`` in
    ``dtype`` on ``device_type``, without loss scaling.

    For bf16 on any device, the CPU included. Args as ``OptimWrapper``'s,
    and:

    Args:
        dtype (str | torch.dtype): the autocast dtype. Default 'bfloat16'.
        device_type (str): 'cpu' or 'cuda'. Default 'cpu'.
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16',
                 device_type: str = 'cpu', **kwargs):
        super().__init__(**kwargs)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, None)
        if dtype not in (torch.bfloat16, torch.float16):
            raise ValueError('AutocastOptimWrapper: dtype must be '
                             f"'bfloat16' or 'float16', got {dtype!r}")
        if dtype == torch.float16 and device_type == 'cuda':
            raise ValueError(
                'fp16 needs loss scaling: use AmpOptimWrapper for fp16 on '
                'a GPU')
        self.cast_dtype = dtype
        self.device_type = device_type

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast(
                self.device_type, dtype=self.cast_dtype):
            yield


def amp_dtype() -> str:
    """The autocast dtype of this machine: 'bfloat16' on CPUs and on GPUs
    that support it, 'float16' on older GPUs."""
    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return 'float16'
    return 'bfloat16'


def amp_optim_wrapper(optim_wrapper: dict) -> dict:
    """``optim_wrapper`` (a config dict) in mixed precision: see the
    module's docstring. A wrapper that is mixed already is kept."""
    if optim_wrapper.get('type', 'OptimWrapper') in MIXED_WRAPPERS:
        return optim_wrapper
    if optim_wrapper.get('type', 'OptimWrapper') != 'OptimWrapper':
        raise ValueError(
            '--amp wraps an `OptimWrapper`; this config has '
            f"{optim_wrapper['type']!r}: set its mixed precision in the "
            'config instead')
    dtype = amp_dtype()
    if torch.cuda.is_available():
        return dict(optim_wrapper, type='AmpOptimWrapper', dtype=dtype,
                    loss_scale='dynamic')
    return dict(optim_wrapper, type='AutocastOptimWrapper', dtype=dtype,
                device_type='cpu')


def trace_data_dependent_shapes() -> None:
    """Let dynamo trace operators whose output shape depends on the data
    (boolean masks, ``nonzero``) instead of breaking the graph there."""
    torch._dynamo.config.capture_dynamic_output_shape_ops = True
