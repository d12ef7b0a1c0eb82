"""Leave no trace on the user's model: copies, saved modes and saved RNG state."""

from __future__ import annotations

import contextlib
import copy
from typing import Iterator

import torch
import torch.nn as nn


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore the global CPU (and CUDA, when present) RNG state on exit."""
    cpu = torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        torch.random.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


@contextlib.contextmanager
def preserved_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Restore every submodule's ``training`` flag on exit."""
    saved = {name: m.training for name, m in model.named_modules()}
    try:
        yield model
    finally:
        for name, m in model.named_modules():
            if name in saved:
                m.training = saved[name]


def model_copy(model: nn.Module) -> nn.Module:
    """A deep copy to trace or exercise; the user's model is never run in place.

    Tensors without data (fake or meta, from ``--meta``) are shared, not copied: see
    ``analyzer/meta.py`` ``shared_state``.
    """
    from torchaudit.analyzer.meta import shared_state

    with preserved_rng():
        return copy.deepcopy(model, shared_state(model))
