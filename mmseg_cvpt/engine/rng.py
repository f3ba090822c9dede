"""The global random streams (torch, CUDA, numpy, python): read, restore,
and keep a block of code off them."""
import random
from contextlib import contextmanager

import numpy as np
import torch


def rng_states() -> dict:
    """The states of torch's CPU (and CUDA), numpy's and python's
    generators."""
    state = dict(
        torch=torch.get_rng_state(),
        numpy=np.random.get_state(),
        python=random.getstate())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state: dict) -> None:
    """Put back what :func:`rng_states` read (the keys present)."""
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
    if 'numpy' in state:
        np.random.set_state(state['numpy'])
    if 'python' in state:
        random.setstate(state['python'])


@contextmanager
def preserved_rng_states():
    """Run a block without moving the global random streams: training draws
    the same numbers as without it."""
    state = rng_states()
    try:
        yield
    finally:
        set_rng_states(state)
