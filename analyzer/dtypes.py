"""The model's dtype, defined once for every rule and comparison.

It is the floating dtype the example inputs reach the model in (their first floating tensor);
without inputs, or with only integer inputs (token ids), the dtype of the model's first
floating parameter or buffer; float32 for a model with neither. A model whose inputs and first
layer are float32 is a float32 model even when later layers hold more float64 elements: those
are the hazard (TA403), not the model's dtype.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from torchaudit.analyzer.load.inputs import ExampleInputs


def model_dtype(model: nn.Module, inputs: ExampleInputs | None = None) -> torch.dtype:
    """See the module docstring."""
    if inputs is not None:
        for t in inputs.tensors():
            if t.is_floating_point():
                return t.dtype
    return parameter_dtype(model)


def parameter_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating parameter or buffer (float32 without one)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``float32``."""
    return str(dtype).removeprefix("torch.")


def more_precise(ref: torch.dtype, cand: torch.dtype) -> bool:
    """Whether ``ref`` resolves finer than ``cand`` (float64 against float32, float32 against
    bfloat16 or float16): the reference then judges the candidate's rounding."""
    if not (ref.is_floating_point and cand.is_floating_point):
        return False
    return torch.finfo(ref).eps < torch.finfo(cand).eps


def narrower_range(src: torch.dtype, dst: torch.dtype) -> bool:
    """Whether floating ``dst`` cannot hold every finite value of floating ``src`` (float64 into
    float32, float32 into float16): casting overflows to infinity beyond ``finfo(dst).max``."""
    return src.is_floating_point and dst.is_floating_point and torch.finfo(dst).max < torch.finfo(src).max
