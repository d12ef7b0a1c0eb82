"""Leave no trace on the user's model: copies, saved modes and saved RNG state."""

from __future__ import annotations

import contextlib
import copy
import random
import sys
from typing import Any, Iterator, NotRequired, TypedDict

import torch
import torch.nn as nn

from torchaudit.errors import TargetError, exception_line


_RngState = TypedDict("_RngState", {
    "torch": torch.Tensor,
    "python": tuple[Any, ...],  # random.getstate(), typed so by typeshed
    "cuda": NotRequired[list[torch.Tensor]],
    "numpy": NotRequired[Any],  # numpy.random.get_state(); numpy is only found in sys.modules, never imported
})


def _rng_state() -> _RngState:
    state: _RngState = {"torch": torch.random.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        state["numpy"] = numpy.random.get_state()
    return state


def _set_rng_state(state: _RngState) -> None:
    torch.random.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        sys.modules["numpy"].random.set_state(state["numpy"])


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore the global RNG states on exit: torch CPU (and CUDA, once initialised), Python's
    ``random`` and, when imported, NumPy's. Forward passes with dropout draw from them."""
    state = _rng_state()
    try:
        yield
    finally:
        _set_rng_state(state)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed the global RNGs (torch, Python's ``random``, NumPy when imported) for what runs
    inside, then restore them: building the model (random initial weights) and drawing its
    example inputs give the same values for the same ``--seed``, and the caller's RNG state
    is as it was."""
    with preserved_rng():
        torch.manual_seed(seed)
        random.seed(seed)
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed(seed % 2**32)
        yield


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


def model_copy(model: nn.Module, share_parameters: bool = False) -> nn.Module:
    """A deep copy to trace or exercise; the user's model is never run in place.

    A model that cannot be deep-copied is a user error (exit 2), not a crash: running it in
    place would risk changing it. Tensors without data (fake or meta, from ``--meta``) are
    shared, not copied: see ``analyzer/load/meta.py`` ``shared_state``. ``share_parameters`` shares
    the parameters too (buffers and Python state are still copied): only for a ``model`` that
    is itself a private copy, such as one side of a comparison.
    """
    from torchaudit.analyzer.load.meta import shared_state

    memo = shared_state(model)
    if share_parameters:
        memo.update({id(p): p for p in model.parameters()})
    with preserved_rng():
        try:
            return copy.deepcopy(model, memo)
        except Exception as exc:  # noqa: BLE001 - user attributes decide what deepcopy does
            raise TargetError(
                f"cannot copy the model with copy.deepcopy ({exception_line(exc)}); "
                "torchaudit only runs copies of a model",
                "make the model deep-copyable, e.g. keep locks, file handles or generators out of its attributes",
            ) from exc
