"""A model without parameter memory, for comparisons that stream weights from disk.

Every parameter is moved to the ``meta`` device the moment its module registers it
(``nn.Module.register_parameter``, which ``Module.__setattr__`` calls for every
``nn.Parameter``), so a constructor's own initialisation (``reset_parameters``,
transformers' ``_init_weights``) runs on meta tensors and costs nothing. Buffers are left
alone: each module builds its own on the CPU, as its ``__init__`` says (rotary ``inv_freq``,
causal masks, ``position_ids``), so non-persistent buffers, which no checkpoint holds, have
their real values. This is what accelerate's ``init_empty_weights(include_buffers=False)``
does; it is done here without accelerate.

A parameter is first created where its constructor creates it (``torch.empty`` on the CPU
for ``nn.Linear``: memory is reserved, never written) and freed at once when moved, so the
build's peak is one parameter.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from typing import Any, Iterator

import torch
import torch.nn as nn

from torchaudit.analyzer.load.meta import fake_copy, new_mode
from torchaudit.analyzer.load.target import LoadedTarget, load_target


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Every parameter registered inside the block is moved to the meta device."""
    register = nn.Module.register_parameter

    def on_meta(self: nn.Module, name: str, param: Any) -> None:
        register(self, name, param)
        p = self._parameters.get(name)
        if p is not None and not p.is_meta:
            moved = p.detach().to("meta")
            self._parameters[name] = type(p)(moved, requires_grad=p.requires_grad) if isinstance(p, nn.Parameter) else moved

    nn.Module.register_parameter = on_meta  # type: ignore[method-assign]  # restored below
    try:
        yield
    finally:
        nn.Module.register_parameter = register  # type: ignore[method-assign]


def load_skeleton_target(spec: str) -> tuple[LoadedTarget, nn.Module]:
    """The target as ``--meta`` sees it (fake tensors, for the rules and the scan's trace) and
    its skeleton (parameters on meta, buffers real), which streamed comparisons run."""
    target = load_target(spec, build_context=parameters_on_meta)
    skeleton = target.model
    mode = new_mode()
    build = target.factory

    def factory() -> nn.Module:
        return fake_copy(build(), mode)

    return dataclasses.replace(target, model=fake_copy(skeleton, mode), factory=factory), skeleton


def skeleton_of(model: nn.Module) -> nn.Module:
    """A skeleton copy of a live model: its parameters on meta (their values are not copied),
    its buffers copied."""
    memo: dict[int, Any] = {}
    for m in model.modules():
        for p in m._parameters.values():
            if p is not None and id(p) not in memo:
                memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    return copy.deepcopy(model, memo)
