"""Example inputs: the first source that applies (DESIGN.md).

1. ``--inputs path.py:fn``
2. ``--input-shape 1,3,224,224`` (repeatable, optional ``:dtype`` suffix, e.g. ``8,128:int64``)
3. a function ``example_inputs()`` in the target file
4. the model's ``example_input_array`` attribute (PyTorch Lightning's convention)
5. for a transformers model: synthesized from its ``main_input_name`` and config
   (analyzer/load/transformers_inputs.py)
"""

from __future__ import annotations

import copy
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn as nn

from torchaudit.analyzer.dtypes import model_dtype
from torchaudit.analyzer.values import describe, map_tensors, tensor_leaves
from torchaudit.errors import InputError

_DTYPES = {
    name: getattr(torch, name)
    for name in (
        "float32", "float64", "float16", "bfloat16", "float", "double", "half",
        "int64", "int32", "int16", "int8", "uint8", "long", "int", "bool",
    )
    if hasattr(torch, name)
}


@dataclass
class ExampleInputs:
    """Positional and keyword arguments for ``model(*args, **kwargs)``."""

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def clone(self) -> "ExampleInputs":
        return ExampleInputs(copy.deepcopy(self.args), copy.deepcopy(self.kwargs), self.source)

    def describe(self) -> str:
        parts = [_describe(a) for a in self.args] + [f"{k}={_describe(v)}" for k, v in self.kwargs.items()]
        return ", ".join(parts)

    def tensors(self) -> list[torch.Tensor]:
        return tensor_leaves((self.args, self.kwargs))


def _describe(obj: Any) -> str:
    return describe(obj, _describe_leaf)


def _describe_leaf(obj: Any) -> str:
    if isinstance(obj, torch.Tensor):
        return f"Tensor[{','.join(map(str, obj.shape))}]:{str(obj.dtype).removeprefix('torch.')}"
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return repr(obj)
    return type(obj).__name__


def from_value(value: Any, source: str) -> ExampleInputs:
    """A tensor, a tuple/list of positional arguments, or a dict of keyword arguments."""
    if isinstance(value, ExampleInputs):
        return value
    if isinstance(value, dict):
        return ExampleInputs((), dict(value), source)
    if isinstance(value, (tuple, list)):
        return ExampleInputs(tuple(value), {}, source)
    return ExampleInputs((value,), {}, source)


def parse_input_shape(text: str, default_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``8,128:int64`` -> an int64 tensor of shape (8, 128); floats are ``randn``.

    Without a ``:dtype`` suffix the tensor takes ``default_dtype`` (the model's own floating
    dtype, so a float64 or bfloat16 model gets matching inputs). Integers are drawn from
    [0, 8), valid token ids and class indices for any vocabulary."""
    shape_text, _, dtype_text = text.partition(":")
    fix = "write it as comma-separated sizes with an optional dtype, e.g. --input-shape 1,3,224,224 or 8,128:int64"
    if re.search(r"\d\s+\d", shape_text):  # "4 1 28 28" is not the size 412828
        raise InputError(f"malformed --input-shape {text!r}: sizes separated by spaces", "use commas, e.g. 4,1,28,28")
    try:
        shape = tuple(int(s) for s in shape_text.replace(" ", "").split(","))
    except ValueError:
        raise InputError(f"malformed --input-shape {text!r}", fix) from None
    if not shape or any(s < 0 for s in shape):
        raise InputError(f"malformed --input-shape {text!r}", fix)
    dtype_name = dtype_text.strip().lower() or str(default_dtype).removeprefix("torch.")
    if dtype_name not in _DTYPES:
        raise InputError(
            f"unknown dtype {dtype_name!r} in --input-shape {text!r}",
            f"write a dtype suffix e.g. 8,128:int64, one of {', '.join(sorted(_DTYPES))}",
        )
    dtype = _DTYPES[dtype_name]
    gen = torch.Generator().manual_seed(0)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    return torch.randint(0, 8, shape, generator=gen).to(dtype)


def _call_inputs_fn(fn: object, label: str) -> Any:
    if not callable(fn):
        raise InputError(f"{label} is not callable", "make it a function that returns the example inputs")
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - user code
        raise InputError(f"{label}() failed: {type(exc).__name__}: {exc}", "fix the example-inputs function") from exc


def resolve_inputs(
    model: nn.Module,
    target_module: ModuleType | None,
    inputs_spec: str | None = None,
    input_shapes: list[str] | None = None,
) -> ExampleInputs | None:
    """Find example inputs; ``None`` when no source applies (the static stage still runs)."""
    if inputs_spec:
        path_text, _, fn_name = inputs_spec.partition(":")
        if not fn_name:
            raise InputError(f"--inputs {inputs_spec!r} names no function", "write it as path.py:function")
        from torchaudit.analyzer.load.target import import_file

        path = Path(path_text)
        if not path.exists():
            raise InputError(f"--inputs file not found: {path}", "check the path in --inputs path.py:function")
        try:
            mod = import_file(path)
        except Exception as exc:
            raise InputError(f"--inputs: {exc}", "fix the inputs file") from exc
        if not hasattr(mod, fn_name):
            raise InputError(f"{path} has no function {fn_name!r}", "check --inputs path.py:function")
        return from_value(_call_inputs_fn(getattr(mod, fn_name), f"{path}:{fn_name}"), f"--inputs {inputs_spec}")
    if input_shapes:
        dtype = model_dtype(model)  # no inputs yet: the first floating parameter's
        tensors = tuple(parse_input_shape(s, dtype) for s in input_shapes)
        return ExampleInputs(tensors, {}, "--input-shape " + " ".join(input_shapes))
    if target_module is not None and callable(getattr(target_module, "example_inputs", None)):
        return from_value(_call_inputs_fn(target_module.example_inputs, "example_inputs"), "example_inputs() in the target file")
    example = getattr(model, "example_input_array", None)
    if example is not None:
        return from_value(example, "the model's example_input_array")
    from torchaudit.analyzer.load.transformers_inputs import transformers_inputs

    synthesized = transformers_inputs(model)
    if synthesized is not None:
        return ExampleInputs((), synthesized[0], synthesized[1])
    return None


def model_device(model: nn.Module) -> torch.device | None:
    """The one device all of the model's parameters and buffers are on (None if several or none)."""
    devices = {t.device for t in list(model.parameters()) + list(model.buffers())}
    return devices.pop() if len(devices) == 1 else None


def place_inputs(inputs: ExampleInputs, model: nn.Module) -> ExampleInputs:
    """Move the inputs' tensors to the model's device (a CUDA model with CPU example inputs; a
    model built on the meta device gets meta inputs: shapes only). New tensors: the caller's
    inputs are left as they are. dtypes are the caller's choice."""
    device = model_device(model)
    if device is None or all(t.device == device for t in inputs.tensors()):
        return inputs

    def move(t: torch.Tensor) -> torch.Tensor:
        return t.to(device)

    return ExampleInputs(map_tensors(move, inputs.args), map_tensors(move, inputs.kwargs), inputs.source)


def describe_for(model: nn.Module, inputs: ExampleInputs) -> str:
    """The inputs named by forward's parameters: ``x=Tensor[8,16]:float32, mask=...``."""
    try:
        bound = inspect.signature(model.forward).bind(*inputs.args, **inputs.kwargs).arguments
    except (TypeError, ValueError):
        return inputs.describe()
    return ", ".join(f"{k}={_describe(v)}" for k, v in bound.items())


def check_forward(model: nn.Module, inputs: ExampleInputs) -> Any:
    """Run ``forward`` once (on the caller's copy); a failure names the inputs, the innermost
    submodule that was running when it raised (``fc1 (Linear): RuntimeError: ...``) and the error."""
    ex = inputs.clone()
    running: list[tuple[str, nn.Module]] = []  # submodules entered and not yet left, outermost first
    handles = _track_running(model, running)
    try:
        with torch.no_grad():
            return model(*ex.args, **ex.kwargs)
    except Exception as exc:  # noqa: BLE001 - user code
        text = str(exc).strip().splitlines()
        where = f"{running[-1][0]} ({type(running[-1][1]).__name__}): " if running else ""
        raise InputError(
            f"forward failed on the example inputs from {inputs.source} ({describe_for(model, inputs)}): "
            f"{where}{type(exc).__name__}: {text[0] if text else ''}",
            "pass inputs that match the model, e.g. with --input-shape or --inputs path.py:fn",
        ) from exc
    finally:
        for handle in handles:
            handle.remove()


def _track_running(model: nn.Module, running: list[tuple[str, nn.Module]]) -> list[Any]:
    """Forward pre-hooks and hooks on every submodule (not the root) that keep ``running`` as the
    stack of submodules being run. A forward that raises skips its hook, so after an exception
    the last entry is the innermost submodule it was raised in."""
    handles: list[Any] = []
    for name, module in model.named_modules():
        if not name:
            continue

        def enter(mod: nn.Module, args: Any, name: str = name) -> None:
            running.append((name, mod))

        def leave(mod: nn.Module, args: Any, output: Any) -> None:
            # pop down to ``mod``: entries above it raised inside a try/except of the forward
            while any(m is mod for _, m in running):
                if running.pop()[1] is mod:
                    break

        try:
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave))
        except (RuntimeError, AttributeError):  # a scripted module takes no Python hooks
            continue
    return handles
