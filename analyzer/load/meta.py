"""``--meta``: scan a model without materializing its weights.

How the model is built (measured with torch 2.13 and transformers 4.57):

1. The factory runs under ``torch.device("meta")``: parameters and buffers are meta tensors
   (shape, dtype, no storage), and conversions inside the factory (``.half()``, ``.to(dtype)``)
   work. Building directly under ``FakeTensorMode`` was tried and is not used: an
   ``nn.Parameter`` made from a fake tensor gets a weak reference from the mode's converter,
   and ``Module._apply`` (``.half()``) must ``swap_tensors`` fake parameters, which refuses
   tensors with weak references (torch/utils/__init__.py ``swap_tensors``).
2. Every meta tensor is then wrapped as a ``FakeTensor`` (torch/_subclasses/fake_tensor.py)
   on the CPU. A model left on ``meta`` cannot run: transformers' Llama rotary embedding
   enters ``torch.autocast(device_type="meta")`` in its forward, which raises. Fake tensors
   report the device ``cpu`` and run every op through fake kernels.

The tracer chain then runs as usual (plain fx, transformers' fx, ``torch.export`` non-strict,
hooks): ops on fake parameters produce fake outputs, so shapes and dtypes propagate while no
value is computed. Rules whose ``needs`` contain ``"values"`` are skipped and the report says
so. Example inputs stay (small) real tensors: fake parameters accept them because the mode is
created with ``allow_non_fake_inputs=True``.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from typing import Any

import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.load.target import LoadedTarget, load_target
from torchaudit.analyzer.values import map_tensors

HOW = "meta device, then FakeTensorMode"  # how --meta builds models (the JSON report's "meta")

SKIP_REASONS = {
    "values": "needs tensor values, which --meta does not materialize",
    "devices": "needs the devices tensors were built on; --meta builds every tensor on the meta device",
    "checkpoint": "needs a checkpoint (--checkpoint)",
    "graph": "needs a traced graph, and no tracer could trace the model",
    "gm": "needs an fx GraphModule; the graph came from forward hooks",
    "dynamic": "needs the dynamic stage, which did not run",
}


def new_mode() -> FakeTensorMode:
    """A fake mode in which real (example) tensors may meet fake parameters."""
    return FakeTensorMode(allow_non_fake_inputs=True)


def is_valueless(t: object) -> bool:
    """A tensor without data: a ``FakeTensor`` or a tensor on the ``meta`` device."""
    return isinstance(t, torch.Tensor) and (isinstance(t, FakeTensor) or t.is_meta)


def has_no_values(model: nn.Module) -> bool:
    """Whether the model's parameters and buffers carry no data (built fake or on meta)."""
    return any(is_valueless(t) for t in itertools.chain(model.parameters(), model.buffers()))


def _module_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Parameters, buffers and plain tensor attributes of every submodule."""
    found: list[torch.Tensor | None] = []
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


def _to_fake(t: torch.Tensor, mode: FakeTensorMode, device: torch.device) -> torch.Tensor:
    if isinstance(t, FakeTensor):
        return t
    fake: torch.Tensor
    if t.is_meta:  # no data to convert: wrap the meta tensor as a fake one on ``device``
        fake = FakeTensor(mode, t.detach(), device)
    else:
        fake = mode.from_tensor(t)
    if isinstance(t, nn.Parameter):
        fake = nn.Parameter(fake, requires_grad=t.requires_grad)
    return fake


def fake_copy(model: nn.Module, mode: FakeTensorMode | None = None, device: str = "cpu") -> nn.Module:
    """A copy of ``model`` whose parameters, buffers and tensor attributes are fake tensors.

    Real tensors are converted without copying their data (keeping their device), meta tensors
    are wrapped as fake tensors on ``device``, fake ones are shared; tied weights stay tied
    (one memo entry per tensor object).
    """
    mode = mode or new_mode()
    memo: dict[int, Any] = {}
    where = torch.device(device)
    for t in _module_tensors(model):
        if id(t) not in memo:
            memo[id(t)] = _to_fake(t, mode, where)
    return copy.deepcopy(model, memo)


def load_meta_target(spec: str) -> LoadedTarget:
    """Import the target, build the model on the meta device, and make it fake (also ``factory()``)."""
    target = load_target(spec, build_context=lambda: torch.device("meta"))
    mode = new_mode()
    build = target.factory

    def factory() -> nn.Module:
        return fake_copy(build(), mode)

    return dataclasses.replace(target, model=fake_copy(target.model, mode), factory=factory)


def as_meta_model(model: nn.Module) -> nn.Module:
    """A copy of a live model with fake tensors (real data is neither copied nor touched)."""
    return fake_copy(model)


def realize_inputs(inputs: ExampleInputs | None) -> ExampleInputs | None:
    """Example inputs as real tensors: fake or meta ones become zeros of their shape and dtype.

    Inputs are small; values do not matter in a meta scan, and real tensors can be cloned
    safely (fake ones cannot, see :func:`shared_state`).
    """
    if inputs is None:
        return None

    def real(t: torch.Tensor) -> torch.Tensor:
        return torch.zeros(tuple(t.shape), dtype=t.dtype) if is_valueless(t) else t

    return ExampleInputs(map_tensors(real, inputs.args), map_tensors(real, inputs.kwargs), inputs.source)


def needs_values(exc: BaseException | None) -> bool:
    """Whether an error (or its cause) came from Python control flow on a fake tensor's value."""
    from torch._subclasses.fake_tensor import DataDependentOutputException, DynamicOutputShapeException

    while exc is not None:
        if isinstance(exc, (DataDependentOutputException, DynamicOutputShapeException)):
            return True
        exc = exc.__cause__
    return False


STREAMED_SKIP_REASONS = {
    "values": "needs the model's tensor values in memory; --stream-weights reads them module by module for the comparisons only",
    "devices": "needs the devices tensors were built on; --stream-weights builds every parameter on the meta device",
}


def describe_skips(skipped: dict[str, str], streamed: bool = False) -> dict[str, str]:
    """``{code: need}`` from the rule engine -> ``{code: why, in words}`` (``streamed``: the
    scan streamed its weights, which is why there are no values)."""
    reasons = {**SKIP_REASONS, **STREAMED_SKIP_REASONS} if streamed else SKIP_REASONS
    return {code: reasons.get(need, f"needs {need}") for code, need in skipped.items()}
