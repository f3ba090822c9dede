"""Boolean states that checkpoints keep and forwards read as Python values.

A flag is a buffer (saved, loaded, resumed with the model) mirrored in a
Python attribute that ``load_state_dict`` refreshes: code on the forward
path reads the attribute, no tensor, so that ``torch.compile`` traces it as
one graph (a ``bool(tensor)`` there is a graph break).
"""
import torch
from torch import nn


def register_flag(module: nn.Module, buffer: str, attribute: str) -> None:
    """Give ``module`` the buffer ``buffer`` (False) and its mirror
    ``attribute``; set both with ``set_flag``."""
    module.register_buffer(buffer, torch.tensor(False))
    setattr(module, attribute, False)

    def read_loaded(loaded: nn.Module, incompatible_keys) -> None:
        setattr(loaded, attribute, bool(getattr(loaded, buffer)))

    module.register_load_state_dict_post_hook(read_loaded)


def set_flag(module: nn.Module, buffer: str, attribute: str,
             value: bool) -> None:
    """Set the flag ``buffer`` / ``attribute`` of ``module`` to ``value``."""
    getattr(module, buffer).fill_(value)
    setattr(module, attribute, value)
