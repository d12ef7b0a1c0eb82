"""The lockstep engine: two graphs, one streaming pass, and the first node whose own error counts.

For every node *n* of the candidate graph, in execution order, the engine runs the reference's
*n* (``y_A``), the **shadow** (the candidate's *n* fed the reference's own inputs, cast to the
candidate's dtype and device: ``y_B|A``), and the candidate's *n* (``y_B``), then measures

* total ``d(y_B, y_A)``, local ``d(y_B|A, y_A)`` and inherited ``d(y_B, y_B|A)``.

Nodes are matched by name (both graphs come from the same tracer on the same model class);
a candidate input the reference lacks is fed from the candidate itself. Like
``torch.fx.Interpreter`` (``user_to_last_uses``) every value is dropped from both environments
right after its last use in the schedule, so memory stays near two plain forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from torchaudit.analyzer.graph import GraphNode, ModelGraph
from torchaudit.analyzer.sides import NotRunnable
from torchaudit.analyzer.metrics import Tolerance, compare_values, diverges, fan_in, has_nonfinite
from torchaudit.report import Divergence, ErrorStats, NodeComparison

Cast = Callable[[Any, Any], Any]  # (reference value, candidate value) -> reference cast like candidate


@dataclass
class LockstepResult:
    nodes: list[NodeComparison] = field(default_factory=list)
    first_divergence: Divergence | None = None
    first_nonfinite: dict[str, Any] | None = None
    output: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def cast_like(ref: Any, cand: Any) -> Any:
    """The reference value in the candidate's dtype and device, leaf by leaf."""
    if isinstance(ref, torch.Tensor):
        if isinstance(cand, torch.Tensor):
            if ref.is_floating_point() and cand.is_floating_point():
                return ref.to(device=cand.device, dtype=cand.dtype)
            return ref.to(device=cand.device)
        return ref
    if isinstance(ref, (list, tuple)) and isinstance(cand, (list, tuple)) and len(ref) == len(cand):
        out = [cast_like(r, c) for r, c in zip(ref, cand)]
        return out if isinstance(ref, list) else type(ref)(*out) if hasattr(ref, "_fields") else tuple(out)
    if isinstance(ref, dict) and isinstance(cand, dict):
        return {k: cast_like(v, cand.get(k)) for k, v in ref.items()}
    if isinstance(ref, float) and isinstance(cand, float) and not abs(ref) <= _FLOAT32_MAX:
        return cand  # e.g. finfo(float64).min for a mask: saturates to the candidate's own
    return ref


_FLOAT32_MAX = 3.4028234663852886e38


def _clone_shared(value: Any, original: Any) -> Any:
    """Clone tensors that the cast left identical to the reference's (the op may write into them)."""
    if isinstance(value, torch.Tensor):
        return value.clone() if value is original else value
    if isinstance(value, (list, tuple)) and isinstance(original, (list, tuple)):
        return type(value)(_clone_shared(v, o) for v, o in zip(value, original)) if not hasattr(value, "_fields") else value
    return value


def module_of(info: GraphNode | None) -> str | None:
    if info is None:
        return None
    if info.module:
        return info.module
    return info.module_stack[-1] if info.module_stack else ""


def _schedule(ref: Any, cand: Any) -> list[tuple[str, str]]:
    """Steps ``(kind, name)``: ``shadow``, ``ref``, ``cand``, ``compare``."""
    steps: list[tuple[str, str]] = []
    done: set[str] = set()
    ref_order = ref.order
    i = 0
    for name in cand.order:
        if name in ref:
            while i < len(ref_order) and ref_order[i] != name:
                if ref_order[i] not in done:
                    steps.append(("ref", ref_order[i]))
                    done.add(ref_order[i])
                i += 1
            steps.append(("shadow", name))
            if name not in done:
                steps.append(("ref", name))
                done.add(name)
            steps.append(("cand", name))
            steps.append(("compare", name))
        else:
            steps.append(("cand", name))
    steps.extend(("ref", n) for n in ref_order if n not in done)
    return steps


def _last_uses(steps: list[tuple[str, str]], ref: Any, cand: Any) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    last_ref: dict[str, int] = {}
    last_cand: dict[str, int] = {}
    for i, (kind, name) in enumerate(steps):
        if kind == "ref":
            last_ref[name] = max(last_ref.get(name, i), i)
            for m in ref.input_names(name):
                last_ref[m] = i
        elif kind == "cand":
            last_cand[name] = max(last_cand.get(name, i), i)
            for m in cand.input_names(name):
                last_cand[m] = i
        elif kind == "shadow":
            for m in cand.input_names(name):
                if m in ref:
                    last_ref[m] = i
                last_cand[m] = i  # the candidate's value guides the cast
        else:  # compare
            last_ref[name] = i
            last_cand[name] = i
            for m in ref.input_names(name):
                last_ref[m] = i
    free_ref: dict[int, list[str]] = {}
    free_cand: dict[int, list[str]] = {}
    for name, i in last_ref.items():
        free_ref.setdefault(i, []).append(name)
    for name, i in last_cand.items():
        free_cand.setdefault(i, []).append(name)
    return free_ref, free_cand


def lockstep(
    ref: Any,
    cand: Any,
    tol: Tolerance,
    cand_dtype: torch.dtype,
    info: ModelGraph,
    *,
    cast: Cast = cast_like,
    explain: Callable[[Any, str, Any], float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LockstepResult:
    """Run both sides node by node; see the module docstring."""
    steps = _schedule(ref, cand)
    free_ref, free_cand = _last_uses(steps, ref, cand)
    result = LockstepResult()
    shadow: dict[str, Any] = {}
    total_nodes = len(cand.order)
    seen = 0
    with torch.no_grad():
        for i, (kind, name) in enumerate(steps):
            if kind == "ref":
                ref.run(name)
            elif kind == "cand":
                cand.run(name)
                seen += 1
                if progress is not None:
                    progress(seen, total_nodes)
            elif kind == "shadow":
                shadow[name] = _run_shadow(ref, cand, name, cast)
            else:
                _compare(ref, cand, name, shadow.pop(name, None), tol, cand_dtype, info, explain, result)
            for n in free_ref.get(i, ()):
                ref.free(n)
            for n in free_cand.get(i, ()):
                cand.free(n)
    return result


def _run_shadow(ref: Any, cand: Any, name: str, cast: Cast) -> Any:
    node = cand.nodes[name]
    if node.op == "placeholder":
        return cast(ref.value(name, cand.inputs.get(name)), cand.inputs.get(name))
    mutates = cand.mutates(name)

    def lookup(m: str) -> Any:
        cval = cand.env.get(m)
        if m not in ref:
            return cval
        rval = ref.value(m, cval)
        if rval is None or isinstance(rval, NotRunnable):
            return cval
        out = cast(rval, cval)
        return _clone_shared(out, rval) if mutates else out

    args, kwargs = cand.args_from(name, lookup)
    with cand.rng.active(advance=False):
        return cand.execute(name, args, kwargs)


def _compare(
    ref: Any, cand: Any, name: str, y_shadow: Any, tol: Tolerance, cand_dtype: torch.dtype,
    info: ModelGraph, explain: Callable[[Any, str, Any], float] | None, result: LockstepResult,
) -> None:
    node = cand.nodes[name]
    if node.op in ("call_method", "call_function") and _op_name(node.target) in SHAPE_OPS:
        return  # same numbers rearranged: no error of its own, and its input was compared
    y_b = cand.value(name)
    y_a = ref.value(name, y_b)
    if isinstance(y_a, NotRunnable):
        if y_a.origin == name:
            _record_unrunnable(cand, name, y_a, info, result)
        return
    if y_a is None:
        return
    total = compare_values(y_a, y_b, tol, cand_dtype)
    if total is None:
        return
    local = compare_values(y_a, y_shadow, tol, cand_dtype)
    inherited = compare_values(y_shadow, y_b, tol, cand_dtype, light=True)
    node = cand.nodes[name]
    gnode = info.node(name) if name in info.graph else None
    judged = node.op not in ("placeholder", "output")
    k = fan_in([cand.env.get(m) for m in cand.input_names(name)] + _params(cand, node)) if judged else 1
    explained = (lambda: explain(ref, name, y_a)) if explain is not None else None
    diverged = judged and diverges(local, tol, k, explained)
    op = gnode.op_name if gnode else str(node.target)
    nc = NodeComparison(
        node=name, module=module_of(gnode), op=op,
        total=total.stats(), local=local.stats() if local else ErrorStats(),
        inherited=inherited.stats() if inherited else ErrorStats(),
        diverged=diverged, location=gnode.location if gnode else None,
    )
    result.nodes.append(nc)
    if diverged and result.first_divergence is None:
        result.first_divergence = Divergence(nc.node, nc.module, nc.op, nc.local, nc.inherited, nc.total, nc.location)
    if result.first_nonfinite is None:
        bad_a, bad_b = (has_nonfinite(y_a), has_nonfinite(y_b)) if total.nonfinite else (False, False)
        if bad_a != bad_b:
            result.first_nonfinite = {
                "node": name, "module": nc.module, "op": op,
                "in": "candidate" if bad_b else "reference",
                "location": nc.location.to_dict() if nc.location else None,
            }
    if node.op == "output":
        s = nc.total
        result.output = {"max_abs": s.max_abs, "max_rel": s.max_rel, "cosine": s.cosine,
                         "mismatch_fraction": s.mismatch_fraction, "close": s.mismatch_fraction == 0.0}


def _record_unrunnable(cand: Any, name: str, y_a: NotRunnable, info: ModelGraph, result: LockstepResult) -> None:
    """The reference could not run this node at all (e.g. batch statistics of one sample)."""
    gnode = info.node(name) if name in info.graph else None
    unknown = ErrorStats(max_abs=0.0, max_rel=0.0, mismatch_fraction=1.0, cosine=0.0)
    nc = NodeComparison(name, module_of(gnode), gnode.op_name if gnode else str(cand.nodes[name].target),
                        unknown, unknown, ErrorStats(), diverged=True, location=gnode.location if gnode else None)
    result.nodes.append(nc)
    result.notes.append(f"{name}: the reference could not run it ({y_a.reason})")
    if result.first_divergence is None:
        result.first_divergence = Divergence(nc.node, nc.module, nc.op, nc.local, nc.inherited, nc.total, nc.location)


SHAPE_OPS = frozenset({
    "view", "reshape", "transpose", "permute", "contiguous", "flatten", "unflatten", "squeeze", "unsqueeze",
    "expand", "expand_as", "chunk", "split", "getitem", "size", "dim", "narrow", "select", "t", "view_as",
    "movedim", "unbind", "_unsafe_view", "clone", "alias", "detach", "slice", "getattr",
})


def _op_name(target: Any) -> str:
    if isinstance(target, str):
        return target
    name = getattr(target, "__name__", "") or str(target)
    return name.split(".")[0] if "." in name and not name.startswith("aten") else name.split(".")[-2 if name.count(".") >= 2 else -1]


def _params(side: Any, node: Any) -> list[Any]:
    if node.op != "call_module":
        return []
    try:
        return list(side.gm.get_submodule(str(node.target)).parameters(recurse=False))
    except AttributeError:
        return []
