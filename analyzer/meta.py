"""``--meta``: scan a model without materializing its weights.

The model is built under PyTorch's ``FakeTensorMode`` (torch/_subclasses/fake_tensor.py):
every parameter and buffer is a ``FakeTensor`` that carries shape, dtype, device and strides
but no storage, so a 6.7B-parameter Llama costs no weight memory. ``torch.device("meta")``
was tried first and is not used: transformers' Llama rotary embedding enters
``torch.autocast(device_type="meta")`` in its forward, which raises, whereas fake tensors
report the device the model would have had (``cpu``) and run every op through fake kernels.

The tracer chain then runs as usual (plain fx, transformers' fx, ``torch.export`` non-strict,
hooks): ops on fake parameters produce fake outputs, so shapes and dtypes propagate while no
value is computed. Rules whose ``needs`` contain ``"values"`` are skipped and the report says
so. Example inputs stay (small) real tensors: fake parameters accept them because the mode is
created with ``allow_non_fake_inputs=True``.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

from torchaudit.analyzer.inputs import ExampleInputs
from torchaudit.analyzer.target import LoadedTarget, load_target

HOW = "FakeTensorMode"  # how --meta builds models (reported in the JSON report's "meta")

SKIP_REASONS = {
    "values": "needs tensor values, which --meta does not materialize",
    "checkpoint": "needs a checkpoint (--checkpoint)",
    "graph": "needs a traced graph, and no tracer could trace the model",
    "gm": "needs an fx GraphModule; the graph came from forward hooks",
    "dynamic": "needs the dynamic stage, which did not run",
}


def new_mode() -> FakeTensorMode:
    """A fake mode in which real (example) tensors may meet fake parameters."""
    return FakeTensorMode(allow_non_fake_inputs=True)


def is_valueless(t: Any) -> bool:
    """A tensor without data: a ``FakeTensor`` or a tensor on the ``meta`` device."""
    return isinstance(t, torch.Tensor) and (isinstance(t, FakeTensor) or t.is_meta)


def has_no_values(model: nn.Module) -> bool:
    """Whether the model's parameters and buffers carry no data (built fake or on meta)."""
    return any(is_valueless(t) for t in itertools.chain(model.parameters(), model.buffers()))


def _module_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Parameters, buffers and plain tensor attributes of every submodule."""
    found: list[torch.Tensor] = []
    for m in model.modules():
        found.extend(m._parameters.values())
        found.extend(m._buffers.values())
        found.extend(v for v in vars(m).values() if isinstance(v, torch.Tensor))
    return [t for t in found if t is not None]


def shared_state(model: nn.Module) -> dict[int, Any]:
    """A ``copy.deepcopy`` memo that makes a copy share the model's data-less tensors.

    Deep-copying a ``FakeTensor`` goes through ``Tensor.__deepcopy__``, which touches its
    storage's data pointer; measured here on torch 2.13, a process that did so and then ran the
    copy crashed at exit (heap corruption). Fake tensors hold no values to protect, so copies
    share them; real tensors are not in the memo and are copied as before.
    """
    return {id(t): t for t in _module_tensors(model) if is_valueless(t)}


def fake_copy(model: nn.Module, mode: FakeTensorMode | None = None) -> nn.Module:
    """A copy of a live model whose tensors are fake; the real data is never copied."""
    mode = mode or new_mode()
    memo: dict[int, Any] = {}
    for t in _module_tensors(model):
        if id(t) in memo or is_valueless(t):
            continue
        fake = mode.from_tensor(t)
        if isinstance(t, nn.Parameter):
            fake = nn.Parameter(fake, requires_grad=t.requires_grad)
        memo[id(t)] = fake
    return copy.deepcopy(model, memo)


def load_meta_target(spec: str) -> LoadedTarget:
    """Import the target and build the model (and later fresh instances) under a fake mode."""
    return load_target(spec, build_context=new_mode)


def as_meta_model(model: nn.Module) -> nn.Module:
    """The model itself when it already has no values, else a fake copy of it."""
    return model if has_no_values(model) else fake_copy(model)


def realize_inputs(inputs: ExampleInputs | None) -> ExampleInputs | None:
    """Example inputs as real tensors: fake or meta ones become zeros of their shape and dtype.

    Inputs are small; values do not matter in a meta scan, and real tensors can be cloned
    safely (fake ones cannot, see :func:`shared_state`).
    """
    if inputs is None:
        return None

    def real(obj: Any) -> Any:
        if is_valueless(obj):
            return torch.zeros(tuple(obj.shape), dtype=obj.dtype)
        if isinstance(obj, (list, tuple)):
            return type(obj)(real(o) for o in obj)
        if isinstance(obj, dict):
            return {k: real(v) for k, v in obj.items()}
        return obj

    return ExampleInputs(real(inputs.args), real(inputs.kwargs), inputs.source)


def describe_skips(skipped: dict[str, str]) -> dict[str, str]:
    """``{code: need}`` from the rule engine -> ``{code: why, in words}``."""
    return {code: SKIP_REASONS.get(need, f"needs {need}") for code, need in skipped.items()}
