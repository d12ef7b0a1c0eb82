"""The ``reload`` comparison: the trained model against the one rebuilt from its state dict.

The tool plays both sides of the everyday workflow (DESIGN.md): on a copy of the model it runs
a few train-mode forward passes (moving BatchNorm statistics, non-persistent buffers and any
attribute a forward mutates), builds a **fresh** instance, loads the copy's state dict into it
through an in-memory ``torch.save``/``torch.load(weights_only=True)`` round trip, and compares
both in eval mode. ``state_diff`` lists every tensor and plain attribute that differs between
the two instances, by dotted name.

The fresh instance comes from the first of:

1. ``fresh_model()`` in the target file;
2. the model's class called with the constructor arguments the target's factory used,
   captured while the factory ran (``analyzer/load/construction.py``): ``build_model()``
   returning ``Net(hidden=16, temperature=2.0)`` is rebuilt as ``Net(16, 2.0)``, and an
   ``nn.Sequential(*layers)`` with layers built anew from their own captured calls, so every
   submodule is freshly initialised; the other arguments are deep copies;
3. for a transformers model passed without a target, ``cls(copy.deepcopy(model.config))``;
4. the class with no arguments, when it needs none.

The factory itself is never rerun: it may train, load weights or return a shared instance.
When none applies, when a captured argument cannot be copied (a generator), or when the fresh
instance does not take the state dict (``load_state_dict`` with ``strict=True`` reports
missing keys or a size mismatch, e.g. a factory that replaces a layer after construction), the
comparison is skipped with that reason and the fix (``fresh_model()``): TA903 says it could
not run, not that torchaudit failed. A constructor of the user's that raises while the fresh
instance is built is the model's own failure (TA904, at its line).
"""

from __future__ import annotations

import copy
import io
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn as nn

from torchaudit.analyzer.dtypes import dtype_name, model_dtype, parameter_dtype
from torchaudit.analyzer.load.construction import UncopiedArguments
from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.compare.metrics import Tolerance
from torchaudit.analyzer.compare.pair import SideSpec, run_pair
from torchaudit.analyzer.load.target import LoadedTarget, needs_no_arguments
from torchaudit.report import ComparisonResult, Config, StateDifference

if TYPE_CHECKING:
    from torchaudit.analyzer.compare.comparisons import Options

EXERCISE_STEPS = 3
_PLAIN = (bool, int, float, str, type(None))
_LOAD_ERRORS = "Error(s) in loading state_dict"  # how nn.Module.load_state_dict starts its RuntimeError
StateValue = torch.Tensor | bool | int | float | str | None  # a tensor or a plain attribute (_PLAIN)


def fresh_builder(model: nn.Module, target: LoadedTarget | None) -> tuple[Callable[[], nn.Module], str]:
    """How to build a fresh instance, and a label saying which way was used."""
    from torchaudit.analyzer.compare.comparisons import Skip

    module = getattr(target, "module", None)
    fn = getattr(module, "fresh_model", None) if module is not None else None
    if callable(fn):
        return fn, "fresh_model() in the target file"
    cls = type(model)
    construction = target.construction if target is not None else None
    if target is not None and construction is not None and construction.cls is cls:
        called = construction.describe()
        return construction.build, called if target.name == cls.__name__ else f"{called}, as {target.name} called it"
    config = getattr(model, "config", None)
    if config is not None and hasattr(cls, "config_class"):  # transformers: Model(config)
        return (lambda: cls(copy.deepcopy(config))), f"{cls.__name__}(model.config)"
    if needs_no_arguments(cls):
        return cls, f"{cls.__name__}()"
    if target is not None:
        raise Skip(
            f"{cls.__name__} needs constructor arguments and {target.name} did not build the model by calling "
            f"{cls.__name__} (it returned a copy, or a model built before it ran); add fresh_model() to the model file"
        )
    raise Skip(
        f"{cls.__name__} needs constructor arguments and there is no fresh_model() to build a fresh "
        "instance; add fresh_model() to the model file, or pass the model as a TARGET"
    )


def exercised(model: nn.Module, inputs: ExampleInputs, seed: int) -> nn.Module:
    """A copy after a few train-mode forward passes (what training does to state)."""
    work = copy.deepcopy(model)
    work.train()
    torch.manual_seed(seed)
    with torch.no_grad():
        for _ in range(EXERCISE_STEPS):
            ex = inputs.clone()
            work(*ex.args, **ex.kwargs)
    return work.eval()


def reloaded(trained: nn.Module, build: Callable[[], nn.Module], label: str, fix: str) -> nn.Module:
    """``build()`` with ``trained``'s state dict loaded, in eval mode; :class:`Skip` (the reason,
    then ``fix``) when that state dict does not fit the fresh instance."""
    from torchaudit.analyzer.compare.comparisons import Skip

    try:
        fresh = build()
    except UncopiedArguments as exc:
        raise Skip(f"{exc}; {fix}") from exc
    if not isinstance(fresh, nn.Module):
        raise TypeError(f"the fresh-instance builder returned a {type(fresh).__name__}, not an nn.Module")
    buf = io.BytesIO()
    torch.save(trained.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    try:
        fresh.load_state_dict(state)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        if not lines or not lines[0].startswith(_LOAD_ERRORS):
            raise  # not load_state_dict's own report: a hook or set_extra_state of the model raised
        first = (lines[1] if len(lines) > 1 else lines[0]).strip().rstrip(".")
        more = f" (and {len(lines) - 2} more)" if len(lines) > 2 else ""
        raise Skip(f"the fresh instance from {label} does not take the model's state_dict: {_cut(first)}{more}; {fix}") from exc
    return fresh.eval()


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def compare_reload(model: nn.Module, inputs: ExampleInputs, opts: "Options") -> ComparisonResult:
    from torchaudit.analyzer.compare.comparisons import Skip, progress_for, result_from

    build, label = fresh_builder(model, opts.target)
    trained = exercised(model, inputs, opts.seed)
    fix = ("add fresh_model() to the model file that builds the model as it is served" if opts.target is not None
           else "pass the model as a TARGET (model.py:build_model), whose constructor arguments are captured")
    fresh = reloaded(trained, build, label, fix)
    served = _one_float_dtype(trained)
    if parameter_dtype(fresh) != parameter_dtype(trained) and served is not None and _one_float_dtype(fresh) is not None:
        # built and then converted as a whole (``Model(cfg).half()``): the rebuild is converted the
        # same way. The state dict's values were copied into the wider dtype exactly, so the
        # conversion gives them back bit for bit.
        fresh = fresh.to(served)
    if parameter_dtype(fresh) != parameter_dtype(trained):
        # load_state_dict casts into the fresh instance's dtype (param.copy_), so the two cannot
        # run the same inputs; a model converted layer by layer after construction cannot be rebuilt
        raise Skip(
            f"the fresh instance from {label} is {dtype_name(parameter_dtype(fresh))} while the model is "
            f"{dtype_name(parameter_dtype(trained))}; add fresh_model() to the model file that builds it as it is served"
        )
    diffs = state_diff(trained, fresh)
    dt = model_dtype(model, inputs)
    cfg = Config("cpu", dtype_name(dt), "eval")
    tol = Tolerance.for_dtype(dt, opts.atol, opts.rtol)
    a = SideSpec(trained, inputs.clone(), "eval", opts.seed)
    b = SideSpec(fresh, inputs.clone(), "eval", opts.seed)
    run, _ = run_pair(a, b, tol, dt, progress=progress_for(opts, "reload"))
    return result_from("reload", cfg, cfg, tol, run, state_diff=tuple(diffs))


def _one_float_dtype(m: nn.Module) -> torch.dtype | None:
    """The one floating dtype of every parameter and buffer of ``m``, or ``None`` (mixed, or none)."""
    dtypes = {t.dtype for t in (*m.parameters(), *m.buffers()) if t.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def _kinds(m: nn.Module) -> dict[str, tuple[str, StateValue]]:
    out: dict[str, tuple[str, StateValue]] = {}
    for name, p in m._parameters.items():
        if p is not None:
            out[name] = ("parameter", p)
    for name, b in m._buffers.items():
        if b is not None:
            kind = "non_persistent_buffer" if name in m._non_persistent_buffers_set else "buffer"
            out[name] = (kind, b)
    for name, v in vars(m).items():
        if name.startswith("_") or name == "training" or name in out:
            continue
        if isinstance(v, torch.Tensor):
            out[name] = ("tensor_attribute", v)
        elif isinstance(v, _PLAIN):
            out[name] = ("python_attribute", v)
    return out


def _show(v: StateValue) -> str:
    if isinstance(v, torch.Tensor):
        if v.numel() <= 6:
            return str(v.detach().cpu().tolist())
        t = v.detach().double() if v.is_floating_point() else v.detach()
        return f"Tensor[{','.join(map(str, v.shape))}]:{str(v.dtype).removeprefix('torch.')} mean={float(t.double().mean()):.6g}"
    return repr(v)


def _same(a: StateValue, b: StateValue) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a.detach().cpu(), b.detach().cpu()))
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return False
    return type(a) is type(b) and a == b


def state_diff(reference: nn.Module, candidate: nn.Module) -> list[StateDifference]:
    """Every tensor and plain attribute that differs, by dotted name."""
    cand_modules = dict(candidate.named_modules())
    out: list[StateDifference] = []
    for path, m in reference.named_modules():
        other = cand_modules.get(path)
        ref_items = _kinds(m)
        cand_items = _kinds(other) if other is not None else {}
        for name in sorted(set(ref_items) | set(cand_items)):
            full = f"{path}.{name}" if path else name
            r = ref_items.get(name)
            c = cand_items.get(name)
            if r is not None and c is not None and _same(r[1], c[1]):
                continue
            either = r or c
            assert either is not None  # the name is a key of one side or the other
            kind = either[0]
            out.append(StateDifference(full, kind, _show(r[1]) if r else "(absent)", _show(c[1]) if c else "(absent)"))
    return out
