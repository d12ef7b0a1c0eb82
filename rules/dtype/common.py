"""Shared predicates of the TA4xx family: the model's dtype and per-module tensors."""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn

HALF = {torch.float16, torch.bfloat16}
NORMS: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


def own_tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """A module's own parameters and buffers (not its children's)."""
    for name, p in module.named_parameters(recurse=False):
        yield name, p
    for name, b in module.named_buffers(recurse=False):
        if b is not None:
            yield name, b


def name(dtype: torch.dtype | str) -> str:
    return str(dtype).removeprefix("torch.")


def op_name(target: str) -> str:
    """``aten._softmax.default`` -> ``softmax``; ``torch.nn.functional.layer_norm`` -> ``layer_norm``."""
    if target.startswith("aten."):
        return target.split(".")[1].lstrip("_")
    return target.rsplit(".", 1)[-1].rstrip("_") if not target.endswith("__") else target
