"""What tools/analysis/benchmark.py measures with: FLOPs counted over the
ops run (``count_flops``), the peak memory of the tensors a step allocates
(``peak_memory``), and the time of a step retaken while other processes
load the machine (``seconds``, from /proc/stat). Definitions:
docs/performance.md."""
import os
import time
import weakref
from typing import Callable, Optional, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import (flop_registry, sdpa_backward_flop_count,
                                      sdpa_flop_count, shape_wrapper)


def cpu_flash_attention_flops(query, key, value, *args, out_shape=None,
                              **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def cpu_flash_attention_backward_flops(grad_out, query, key, value, *args,
                                       out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# torch's formulas, plus the CPU attention kernel they do not know.
FLOP_FORMULAS = {
    **flop_registry,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
    shape_wrapper(cpu_flash_attention_flops),
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
    shape_wrapper(cpu_flash_attention_backward_flops),
}


class FlopCounter(TorchDispatchMode):
    """Sums FLOP_FORMULAS over every op run (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = FLOP_FORMULAS.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, out_val=out, **kwargs)
        return out


def count_flops(step: Callable[[], None]) -> int:
    with FlopCounter() as counter:
        step()
    return counter.flops


class TensorMemory(TorchDispatchMode):
    """Bytes of the tensor storages that ops create, while alive; and the peak.

    A storage counts from the op that allocates it (an output sharing no
    storage with the op's inputs: views and in-place results do not count)
    until it is freed (storages keep their Python object for their whole
    life, so a weakref callback sees the free).
    """

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {t.untyped_storage().data_ptr()
                  for t in tree_leaves((args, kwargs))
                  if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                if storage.data_ptr() not in inputs and storage.nbytes():
                    inputs.add(storage.data_ptr())
                    self._track(storage)
        return out

    def _track(self, storage) -> None:
        nbytes = storage.nbytes()
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, nbytes)

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes


def peak_memory(step: Callable[[], None],
                device: torch.device = torch.device('cpu')) -> float:
    """Peak MiB of tensors the step allocates: on a GPU the allocator's
    peak above what was allocated before, else ``TensorMemory``'s."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with TensorMemory() as memory:
        step()
    return memory.peak / 2**20


class CpuShare:
    """Share of the machine's CPU time used by anything but this process.

    From /proc/stat (all CPUs, including time stolen by the hypervisor) and
    this process's own CPU time; None where /proc/stat is missing.
    """
    TICKS = os.sysconf('SC_CLK_TCK')

    @staticmethod
    def _snapshot():
        try:
            with open('/proc/stat') as stat:
                ticks = [int(t) for t in stat.readline().split()[1:]]
        except OSError:
            return None
        own = os.times()
        busy = sum(ticks) - ticks[3] - ticks[4]  # minus idle and iowait
        return sum(ticks), busy, own.user + own.system

    def __enter__(self):
        self.start = self._snapshot()
        return self

    def __exit__(self, *exc):
        self.end = self._snapshot()

    @property
    def others(self) -> Optional[float]:
        if self.start is None or self.end is None:
            return None
        total, busy, own = (b - a for a, b in zip(self.start, self.end))
        return max(0., busy / self.TICKS - own) / max(total / self.TICKS,
                                                       1e-9)


def wait_for_quiet(threshold: float, patience: float = 15.) -> None:
    """Wait (at most ``patience`` s) for other processes to calm down."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        with CpuShare() as share:
            time.sleep(0.25)
        if share.others is None or share.others < threshold:
            return


def cuda_seconds(step: Callable[[], None], device: torch.device) -> float:
    """GPU time of the step between two CUDA events."""
    start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
    torch.cuda.synchronize(device)
    start.record()
    step()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def seconds(step: Callable[[], None], device: torch.device, clock: str,
            threshold: float, attempts: int = 3) -> Tuple[float, float]:
    """Time of the step by ``clock`` (on a GPU: between CUDA events),
    retaken while other processes used more than ``threshold`` of the CPUs;
    returns (seconds, their share)."""
    read_clock = time.process_time if clock == 'cpu' else time.perf_counter
    for _ in range(attempts):
        wait_for_quiet(threshold)
        with CpuShare() as share:
            if device.type == 'cuda':
                elapsed = cuda_seconds(step, device)
            else:
                start = read_clock()
                step()
                elapsed = read_clock() - start
        if share.others is None or share.others < threshold:
            break
    return elapsed, share.others or 0.
