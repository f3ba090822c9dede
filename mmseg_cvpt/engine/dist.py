"""Distributed runs on machines without CUDA, and peers that stop
responding."""
import gc
import os
import re
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.dist import init_dist, is_distributed
from mmengine.logging import print_log

from .config import iter_dicts


def setup_cpu_distributed(cfg: Config) -> None:
    """Prepare a ``--launcher pytorch`` run for a machine without CUDA.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and defaults to
    NCCL, so on a CPU-only machine a ``torchrun`` launch fails. Call this
    after the command-line options are merged and before the Runner is
    built; with CUDA available, or with another launcher, it does nothing.
    Otherwise it

    * creates the process group with the gloo backend from torchrun's
      environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
      ``MASTER_PORT``); the Runner finds it initialised and skips
      ``init_dist``, yet still treats the run as distributed (its launcher is
      not ``'none'``): distributed samplers, gradient all-reduce, rank-0
      logging and saving;
    * records ``backend='gloo'`` in ``cfg.env_cfg.dist_cfg``;
    * wraps the model in ``MMDistributedDataParallel`` with
      ``device_ids=None``, the form DDP requires for CPU modules;
    * turns ``SyncBN`` into ``BN`` (``SyncBatchNorm`` needs a GPU); each
      process then keeps its own batch statistics.

    Args:
        cfg (Config): The full config, ``cfg.launcher`` set.
    """
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return
    cfg.merge_from_dict({'env_cfg.dist_cfg.backend': 'gloo'})
    if not torch_dist.is_initialized():
        kwargs = {}
        timeout = cfg.env_cfg.dist_cfg.get('timeout')
        if timeout is not None:
            kwargs['timeout'] = timedelta(seconds=timeout)
        torch_dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            **kwargs)
    # the Runner's default wrapper, but with the device_ids CPU modules need
    wrapper_cfg = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_cfg['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper_cfg
    for module_cfg in iter_dicts(cfg.model):
        if module_cfg.get('type') == 'SyncBN':
            module_cfg['type'] = 'BN'
    print_log(
        'No CUDA device: distributed run on CPU with the gloo backend '
        f'(rank {torch_dist.get_rank()} of {torch_dist.get_world_size()}); '
        'SyncBN layers use per-process BN.',
        logger='current')


def start_distributed(cfg: Config) -> None:
    """Create the process group of a distributed run now, before the
    Runner (which finds it and goes on), so that the ranks can agree on
    things before it is built (the work dir's lock); on CPU through
    :func:`setup_cpu_distributed`. A no-op with ``launcher='none'``."""
    setup_cpu_distributed(cfg)
    if cfg.get('launcher', 'none') != 'none' and not is_distributed():
        init_dist(cfg.launcher, **cfg.get('env_cfg', {}).get('dist_cfg', {}))


def end_distributed() -> None:
    """Destroy the process group of a finished distributed run (a no-op
    without one); call it once the runner is gone. Left to the
    interpreter's exit, gloo's threads may be torn down while they run:
    "terminate called without an active exception", and the rank exits by
    SIGABRT after a run that succeeded. The runner's DDP model holds the
    group too, and the runner lives in reference cycles: collected first,
    the group's last reference is the one destroyed here (its threads
    joined now), after a barrier so that no peer still talks to it."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        gc.collect()
        torch_dist.barrier()
        torch_dist.destroy_process_group()


# what gloo (and torch's stores) say when a peer does not answer in time
_PEER_LOST = re.compile(
    r'timed out waiting|connection (closed|reset) by peer|broken pipe|'
    r'socket timeout', re.IGNORECASE)


class PeerLostError(RuntimeError):
    """A peer process of a distributed run stopped responding."""


@contextmanager
def report_lost_peers(cfg: Config):
    """Turn a collective that timed out into an error saying what happened.

    With gloo, a collective whose peer does not answer within
    ``env_cfg.dist_cfg.timeout`` seconds raises e.g. "Timed out waiting
    1800000ms for recv operation"; a peer that died breaks the connection.
    Either way this rank cannot go on: the error is re-raised as a
    :class:`PeerLostError` that names the rank and the setting, and the
    process exits non-zero.
    """
    try:
        yield
    except RuntimeError as error:
        if not (torch_dist.is_initialized()
                and _PEER_LOST.search(str(error))):
            raise
        timeout = cfg.get('env_cfg', {}).get('dist_cfg', {}).get(
            'timeout', "1800 (torch's default)")
        raise PeerLostError(
            f'Rank {torch_dist.get_rank()} of '
            f'{torch_dist.get_world_size()}: a peer stopped responding '
            f'(no answer within env_cfg.dist_cfg.timeout={timeout} s) or '
            'exited. Check the other ranks\' logs (killed, stopped, out of '
            'memory, a hung data loader?); if a rank legitimately works '
            'alone longer than that, raise the timeout, e.g. --cfg-options '
            f'env_cfg.dist_cfg.timeout=SECONDS. Cause: {error}') from error
