"""The lockstep engine: two graphs, one streaming pass, and the first node whose own error counts.

For every node *n* of the candidate graph, in execution order, the engine runs the reference's
*n* (``y_A``), the **shadow** (the candidate's *n* fed the reference's own inputs, cast to the
candidate's dtype and device: ``y_B|A``), and the candidate's *n* (``y_B``), then measures

* total ``d(y_B, y_A)``, local ``d(y_B|A, y_A)`` and inherited ``d(y_B, y_B|A)``.

Nodes are matched by name (both graphs come from the same tracer on the same model class;
where the two graphs differ, ``pair.align`` renames the reference's nodes after the
candidate's by module, op and occurrence); a candidate input the reference lacks, or holds in
another shape, is fed from the candidate itself. A vmap region (:func:`vmap_regions`) runs
whole on each side in turn, and only what it hands on is compared. After the run, a result
whose outputs are outside tolerance with no node to blame names the nodes that add most of
the error (:meth:`LockstepResult.contributors`). Like
``torch.fx.Interpreter`` (``user_to_last_uses``) every value is dropped from both environments
right after its last use in the schedule, so memory stays near two plain forward passes.

What keeps the cost near those two passes:

* each reference value is cast like the candidate's once, and that cast feeds the shadows of
  all its users and its own node's statistics; ops that only rearrange elements (``view``,
  ``transpose``, ``getitem``) pass the cast on instead of casting their output again;
* a shadow whose inputs are bitwise the candidate's own (same-dtype comparisons, up to the
  first difference) is not run: it would be the candidate's output, so the error is local;
* an in-place op forgets what it may have changed (casts, and which values are identical).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.fx

from torchaudit.analyzer.dtypes import narrower_range
from torchaudit.analyzer.trace.graph import GraphNode, ModelGraph, fx_op_name
from torchaudit.analyzer.compare.sides import Candidate, NotRunnable, Side, vmap_region_starts
from torchaudit.analyzer.compare.metrics import Measured, Reference, Tolerance, Workspace, compare_values, diverges, fan_in, has_nonfinite
from torchaudit.analyzer.values import cloned, zip_map
from torchaudit.report import Contribution, Divergence, ErrorStats, NodeComparison

Cast = Callable[[Any, Any], Any]  # (reference value, candidate value) -> reference cast like candidate
# (reference side, node, reference output, rounded input by name) -> the rounding's relative error
Explain = Callable[[Side, str, Any, Callable[[str], Any]], float]
SAME_AS_CANDIDATE = object()  # a shadow not run: fed the candidate's own inputs, it is the candidate


@dataclass
class LockstepResult:
    nodes: list[NodeComparison] = field(default_factory=list)
    first_divergence: Divergence | None = None
    first_nonfinite: dict[str, Any] | None = None
    output: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    arbiter: bool = False  # the reference is a higher-precision arbiter (float64), not a configuration the user runs
    arbiter_nonfinite: str | None = None  # first node where only the arbiter had NaN/Inf
    graph: ModelGraph | None = None  # the graph the nodes are named in
    relative: dict[str, float] = field(default_factory=dict)  # node -> total ||error|| / ||reference||
    relative_order: dict[str, int] = field(default_factory=dict)  # node -> its place in the recording order
    added: dict[str, tuple[float, str | None, str | None]] = field(default_factory=dict)  # node -> (error it adds, module and node it entered after)

    def carried(self, info: ModelGraph, name: str) -> tuple[float, str | None]:
        """The largest relative error among the compared nodes that feed ``name`` (through
        nodes not compared, such as views), and the last of those nodes to run."""
        best, last, seen = 0.0, None, set()
        stack = list(info.predecessors(name)) if name in info.graph else []
        while stack:
            p = stack.pop()
            if p in seen:
                continue
            seen.add(p)
            if p in self.relative:
                best = max(best, self.relative[p])
                if last is None or self.relative_order[p] > self.relative_order[last]:
                    last = p
            elif p in info.graph:
                stack.extend(info.predecessors(p))
        return best, last

    def contributors(self, top: int = 3) -> tuple[Contribution, ...]:
        """The nodes that add most of the error, largest first: what to look at when the outputs
        are outside tolerance and no node's own error is to blame."""
        info = self.graph
        if info is None:
            return ()
        ranked = sorted(((a[0], n) for n, a in self.added.items() if a[0] > 0.0), key=lambda t: -t[0])[:top]
        out = []
        for added, name in ranked:
            gnode = info.node(name) if name in info.graph else None
            _, entered_in, after = self.added[name]
            out.append(Contribution(name, module_of(gnode), gnode.op_name if gnode else name, added,
                                    entered_in, after, gnode.location if gnode else None))
        return tuple(out)


class GraphsDiffer(Exception):
    """The two sides' graphs cannot be run in lockstep node by node."""


def cast_like(ref: Any, cand: Any) -> Any:
    """The reference value in the candidate's dtype and device, leaf by leaf; as it is where
    the two values' structures differ."""
    cast = zip_map(_cast_leaf, ref, cand)
    return ref if cast is None else cast


def _cast_leaf(ref: Any, cand: Any) -> Any:
    if isinstance(ref, torch.Tensor):
        if isinstance(cand, torch.Tensor):
            if ref.is_floating_point() and cand.is_floating_point():
                return saturating_cast(ref, cand.dtype, cand.device)
            return ref.to(device=cand.device)
        return ref
    if isinstance(ref, float) and isinstance(cand, float):
        if not abs(ref) <= _FLOAT32_MAX:
            return cand  # e.g. finfo(float64).min for a mask: saturates to the candidate's own
        if ref in _LIMITS and cand in _LIMITS and (ref > 0) == (cand > 0):
            return cand  # finfo(float32).min against finfo(float16).min: each dtype's own limit
    return ref


_FLOAT32_MAX = 3.4028234663852886e38
_LIMITS = frozenset(v for t in (torch.float64, torch.float32, torch.float16, torch.bfloat16)
                    for v in (torch.finfo(t).max, torch.finfo(t).min))


def saturating_cast(t: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``t`` in ``dtype`` on ``device``, a finite value beyond ``dtype``'s range saturating to its
    largest finite value instead of becoming an infinity.

    ``Tensor.to`` rounds a float64 ``-1.8e308`` (``torch.finfo(torch.float64).min``, the fill
    of every transformers causal mask built in float64) to float32 ``-inf``, where the
    candidate's own mask holds ``torch.finfo(torch.float32).min``: the shadow would see an
    infinity its own side never has (``-inf * 0`` is NaN where ``finfo.min * 0`` is ``0``).
    Saturated, the value is the candidate dtype's own limit, as its own code would have made
    it. Infinities and NaNs of ``t`` stay what they are. The usual case (nothing out of range)
    costs one sum over the cast, to see that it is finite."""
    out = t.to(device=device, dtype=dtype)
    if not narrower_range(t.dtype, dtype) or out.numel() == 0 or math.isfinite(float(out.sum())):
        return out
    info = torch.finfo(dtype)
    src = t.to(device)
    overflowed = out.isinf() & src.isfinite()
    if not bool(overflowed.any()):
        return out
    limit = torch.where(src > 0, info.max, info.min).to(dtype)
    return torch.where(overflowed, limit, out)


def module_of(info: GraphNode | None) -> str | None:
    if info is None:
        return None
    if info.module:
        return info.module
    return info.module_stack[-1] if info.module_stack else ""


def vmap_regions(order: list[str], nodes: Mapping[str, torch.fx.Node]) -> dict[str, list[str]]:
    """The nodes between functorch's ``_vmap_increment_nesting`` and its matching
    ``_vmap_decrement_nesting`` (both included), by the region's first node.

    Export graphs of vmapped code (transformers' mask functions) push and pop a global vmap
    level (torch/_functorch/predispatch.py): run node by node and interleaved with another run,
    the two runs' levels cross. Such a region runs whole on one side, then whole on the other,
    and only the values it hands to the rest of the graph are compared."""
    regions: dict[str, list[str]] = {}
    for name, first in vmap_region_starts(order, nodes).items():  # in ``order``'s order
        regions.setdefault(first, []).append(name)
    return regions


def _schedule(ref: Side, cand: Candidate, regions: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Steps ``(kind, name)``: ``shadow``, ``ref``, ``cand``, ``compare``; and ``ref_region``,
    ``cand_region`` (``name``: the region's first node) for a vmap region, run whole."""
    steps: list[tuple[str, str]] = []
    done: set[str] = set()
    ref_order = ref.order
    in_region = {n: first for first, names in regions.items() for n in names}
    i = 0

    def catch_up(name: str) -> None:
        nonlocal i
        while i < len(ref_order) and ref_order[i] != name:
            if ref_order[i] not in done:
                steps.append(("ref", ref_order[i]))
                done.add(ref_order[i])
            i += 1

    for name in cand.order:
        first = in_region.get(name)
        if first is not None:
            if name != first:
                continue
            names = regions[first]
            catch_up(first)
            steps.append(("ref_region", first))
            steps.append(("cand_region", first))
            done.update(names)
            member = set(names)
            for n in names:  # what the region hands on: compared once both sides ran it
                if any(u.name not in member for u in cand.nodes[n].users):
                    steps.append(("compare", n))
        elif name in ref:
            catch_up(name)
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


def _last_uses(steps: list[tuple[str, str]], ref: Side, cand: Side, explain: bool,
               regions: dict[str, list[str]]) -> tuple[dict[int, list[str]], ...]:
    """At which step each value is dropped: the reference's, the candidate's, and the casts of
    the reference's (kept for the shadows of their users, and for the explainer, which reruns
    the reference's op on its inputs rounded like the candidate's: on those casts)."""
    last_ref: dict[str, int] = {}
    last_cand: dict[str, int] = {}
    last_cast: dict[str, int] = {}
    for i, (kind, name) in enumerate(steps):
        if kind in ("ref", "ref_region"):
            for n in regions[name] if kind == "ref_region" else [name]:
                last_ref[n] = max(last_ref.get(n, i), i)
                for m in ref.input_names(n):
                    last_ref[m] = i
        elif kind in ("cand", "cand_region"):
            for n in regions[name] if kind == "cand_region" else [name]:
                last_cand[n] = max(last_cand.get(n, i), i)
                for m in cand.input_names(n):
                    last_cand[m] = i
        elif kind == "shadow":
            for m in cand.input_names(name):
                if m in ref:
                    last_ref[m] = i  # a cast cleared by an in-place op is made again from it
                    last_cast[m] = i
                last_cand[m] = i  # the candidate's value guides the cast
        else:  # compare
            last_ref[name] = i
            last_cand[name] = i
            last_cast[name] = max(last_cast.get(name, i), i)
            if explain:
                for m in cand.input_names(name):
                    if m in ref:
                        last_cast[m] = i
    return tuple(_by_step(last) for last in (last_ref, last_cand, last_cast))


def _by_step(last: dict[str, int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for name, i in last.items():
        out.setdefault(i, []).append(name)
    return out


def lockstep(
    ref: Side,
    cand: Candidate,
    tol: Tolerance,
    cand_dtype: torch.dtype,
    info: ModelGraph,
    *,
    cast: Cast = cast_like,
    explain: Explain | None = None,
    progress: Callable[[int, int], None] | None = None,
    arbiter: bool = False,
) -> LockstepResult:
    """Run both sides node by node; see the module docstring."""
    regions = vmap_regions(cand.order, cand.nodes)
    if any(n not in ref for names in regions.values() for n in names):
        raise GraphsDiffer("the two sides' graphs differ in a vmap region (transformers' mask functions), which runs whole")
    region_nodes = {n for names in regions.values() for n in names}
    steps = _schedule(ref, cand, regions)
    free_ref, free_cand, free_casts = _last_uses(steps, ref, cand, explain is not None, regions)
    result = LockstepResult(arbiter=arbiter, graph=info)
    shadow: dict[str, Any] = {}
    fan_ins: dict[str, int] = {}
    casts = _Casts(ref, cast)
    same: set[str] = set()  # values bitwise identical on both sides
    ws = Workspace()
    total_nodes = len(cand.order)
    seen = 0
    with torch.no_grad():
        for i, (kind, name) in enumerate(steps):
            if kind == "ref":
                ref.run(name)
                if ref.mutates(name):  # an in-place op: casts of its inputs, and of views of them, are stale
                    casts.clear()
                    same.clear()
            elif kind == "cand":
                cand.run(name)
                if cand.mutates(name):
                    same.clear()
                seen += 1
                if progress is not None:
                    progress(seen, total_nodes)
            elif kind == "ref_region":
                ref.run_region(regions[name])
                casts.clear()
                same.clear()
            elif kind == "cand_region":
                cand.run_region(regions[name])
                seen += len(regions[name])
                if progress is not None:
                    progress(seen, total_nodes)
            elif kind == "shadow":
                node, inputs = cand.nodes[name], cand.input_names(name)
                if node.op != "placeholder" and all(m in same or m not in ref for m in inputs):
                    shadow[name] = SAME_AS_CANDIDATE  # fed what the candidate is fed: the op gives its output
                    if fx_op_name(node.target) in SHAPE_OPS and all(m in same for m in inputs):
                        same.add(name)  # not compared: same numbers, rearranged
                else:
                    try:
                        shadow[name], from_ref = _run_shadow(ref, cand, name, casts)
                    except Exception as exc:  # noqa: BLE001 - the op refuses the reference's values in the candidate's dtype
                        shadow[name], from_ref = None, False  # its error counts as its own; the candidate's run comes next
                        result.notes.append(f"{name}: the candidate's op could not run on the reference's inputs "
                                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                                            "its whole error is counted as its own")
                    if from_ref and _rearranges(node):
                        casts.seed(name, shadow[name])  # rearranging commutes with the cast: no second one
                fan_ins[name] = fan_in([cand.env.get(m) for m in inputs] + cand.parameters_of(name))  # inputs still alive here
            else:
                if compare_node(ref, cand, name, shadow.pop(name, None), tol, cand_dtype, info,
                                None if name in region_nodes else explain, result, ws, casts, fan_ins.pop(name, None)):
                    same.add(name)
            for n in free_ref.get(i, ()):
                ref.free(n)
            for n in free_casts.get(i, ()):
                casts.drop(n)
            for n in free_cand.get(i, ()):
                cand.free(n)
    return result


class _Casts:
    """The reference's values cast like the candidate's, each made once: the shadows of all of
    a value's users and the statistics of its own node share it. A cast is dropped after its
    last reader (``_last_uses``), and all are when an in-place op of the reference runs."""

    def __init__(self, ref: Side, cast: Cast) -> None:
        self.ref = ref
        self.cast = cast
        self.values: dict[str, Any] = {}

    def get(self, name: str, like: Any) -> Any:
        """The cast of the reference's ``name``, or ``None`` where the reference has no value."""
        if name not in self.values:
            rval = self.ref.value(name, like)
            if rval is None or isinstance(rval, NotRunnable):
                return None
            self.values[name] = self.cast(rval, like)
        return self.values[name]

    def peek(self, name: str) -> Any:
        """The cast if it is at hand, without making one."""
        return self.values.get(name)

    def seed(self, name: str, value: Any) -> None:
        self.values[name] = value

    def drop(self, name: str) -> None:
        self.values.pop(name, None)

    def clear(self) -> None:
        self.values.clear()


def _run_shadow(ref: Side, cand: Candidate, name: str, casts: _Casts) -> tuple[Any, bool]:
    """The candidate's op on the reference's inputs; and whether every input came from the
    reference (a missing one is taken from the candidate)."""
    node = cand.nodes[name]
    if node.op == "placeholder":
        return casts.cast(ref.value(name, cand.inputs.get(name)), cand.inputs.get(name)), False
    mutates = cand.mutates(name)
    from_ref = True

    def lookup(m: str) -> Any:
        nonlocal from_ref
        cval = cand.env.get(m)
        out = casts.get(m, cval) if m in ref else None
        if out is None or not _same_shape(out, cval):  # never an input the op did not see on its own side
            from_ref = False
            return cval
        return cloned(out) if mutates else out  # the op writes into its inputs: not into shared casts

    args, kwargs = cand.args_from(name, lookup)
    with cand.rng.active(advance=False):
        return cand.execute(name, args, kwargs), from_ref


def _same_shape(a: Any, b: Any) -> bool:
    """Whether ``a`` can stand in for ``b``: for tensors, the same shape."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape
    return True


def _rearranges(node: torch.fx.Node) -> bool:
    """An op that only moves or selects tensor elements (``view``, ``transpose``, ``getitem``):
    applied to a cast value, it gives the cast of its output."""
    return node.op in ("call_method", "call_function") and fx_op_name(node.target) in REARRANGING


def compare_node(
    ref: Side, cand: Candidate, name: str, y_shadow: Any, tol: Tolerance, cand_dtype: torch.dtype,
    info: ModelGraph, explain: Explain | None, result: LockstepResult,
    ws: Workspace | None = None, casts: _Casts | None = None, k: int | None = None,
) -> bool:
    """Measure node ``name`` of both sides and record it; returns whether both sides' values
    are identical. ``y_shadow`` is :data:`SAME_AS_CANDIDATE` when the shadow was not run: its
    inputs were the candidate's own, so its output is the candidate's and the whole error is
    local. ``k``: the node's fan-in, when the caller measured it while its inputs were alive."""
    node = cand.nodes[name]
    if node.op in ("call_method", "call_function") and fx_op_name(node.target) in SHAPE_OPS:
        return False  # same numbers rearranged: no error of its own, and its input was compared
    y_b = cand.value(name)
    y_a = ref.value(name, y_b)
    if isinstance(y_a, NotRunnable):
        if y_a.origin == name:
            _record_unrunnable(cand, name, y_a, info, result)
        return False
    if y_a is None:
        return False
    judged = node.op not in ("placeholder", "output")
    if k is None:
        k = fan_in([cand.env.get(m) for m in cand.input_names(name)] + cand.parameters_of(name)) if judged else 1
    explained = (lambda: explain(ref, name, y_a, casts.peek if casts is not None else lambda m: None)) if explain is not None else None
    y_a_cast = casts.get(name, y_b) if casts is not None else None
    return record(result, info, name, node.op, str(node.target), y_a, y_b, y_shadow, tol, cand_dtype,
                  k=k, explained=explained, y_a_cast=y_a_cast, ws=ws)


def record(
    result: LockstepResult, info: ModelGraph, name: str, kind: str, target: str, y_a: Any, y_b: Any, y_shadow: Any,
    tol: Tolerance, cand_dtype: torch.dtype, *, k: int, explained: Callable[[], float] | None = None,
    y_a_cast: Any = None, ws: Workspace | None = None,
) -> bool:
    """Measure one node's reference, candidate and shadow values and add it to ``result``:
    total, local and inherited error, whether it diverges, the first divergence and the first
    non-finite value. ``kind`` is the node's op kind (``call_module``, ``output``, ...);
    ``y_a_cast``, the reference value already cast like the candidate's, if at hand. Returns
    whether both sides' values are identical. The op-level engine and the module-level hook
    path both record through here."""
    prepared = Reference(y_a, y_a_cast)  # total and local share it
    total = compare_values(prepared, y_b, tol, cand_dtype, ws=ws)
    if total is None:
        return False
    local: Measured | None
    inherited: Measured | None
    if y_shadow is SAME_AS_CANDIDATE or y_shadow is None:  # None: no shadow ran (an input): the error is its own
        local, inherited = total, None
    else:
        local = compare_values(prepared, y_shadow, tol, cand_dtype, ws=ws)
        inherited = compare_values(y_shadow, y_b, tol, cand_dtype, light=True, ws=ws)
    del prepared
    gnode = info.node(name) if name in info.graph else None
    judged = kind not in ("placeholder", "output")
    diverged = judged and diverges(local, tol, k, explained)
    op = gnode.op_name if gnode else target
    nc = NodeComparison(
        node=name, module=module_of(gnode), op=op,
        total=total.stats(), local=local.stats() if local else ErrorStats(),
        inherited=inherited.stats() if inherited else ErrorStats(),
        diverged=diverged, location=gnode.location if gnode else None,
    )
    result.nodes.append(nc)
    _account(result, info, name, kind, total, local)
    if diverged and result.first_divergence is None:
        result.first_divergence = Divergence(nc.node, nc.module, nc.op, nc.local, nc.inherited, nc.total, nc.location)
    if result.first_nonfinite is None:
        bad_a, bad_b = (has_nonfinite(y_a), has_nonfinite(y_b)) if total.nonfinite else (False, False)
        if bad_a and not bad_b and kind != "output" and result.arbiter:
            # only the higher-precision reference (the arbiter, not a configuration the user runs)
            # made it, and it did not reach an output: a note, not the user's NaN (TA706)
            if not result.arbiter_nonfinite:
                result.arbiter_nonfinite = name
                result.notes.append(f"{name}: NaN/Inf appears in the higher-precision reference only, not in the "
                                    "candidate (the configuration you run), and does not reach the output")
        elif bad_a != bad_b:
            result.first_nonfinite = {
                "node": name, "module": nc.module, "op": op,
                "in": "candidate" if bad_b else "reference",
                "location": nc.location.to_dict() if nc.location else None,
            }
    if kind == "output":
        s = nc.total
        result.output = {"max_abs": s.max_abs, "max_rel": s.max_rel, "cosine": s.cosine,
                         "mismatch_fraction": s.mismatch_fraction, "close": s.mismatch_fraction == 0.0}
    return total.identical


def _account(result: LockstepResult, info: ModelGraph, name: str, kind: str, total: Measured, local: Measured | None) -> None:
    """How much error node ``name`` adds: its own (local) relative error, or what its total
    gained over the compared nodes that feed it, whichever is larger. The second is error
    that entered between compared nodes (a module's own code at module granularity): it
    entered after the last of those nodes to run, in the innermost module holding both."""
    t = total.norm_rel
    result.relative_order[name] = len(result.relative)
    result.relative[name] = t
    if kind in ("placeholder", "output", "get_attr"):
        return
    own = local.norm_rel if local is not None else t
    carried, after = result.carried(info, name)
    gained = t - carried
    if gained > own and after is not None:
        result.added[name] = (gained, _common_module(info.node(name).module, info.node(after).module), after)
    else:
        result.added[name] = (max(own, 0.0), None, None)


def _common_module(a: str, b: str) -> str:
    """The innermost module holding modules ``a`` and ``b`` (``""``: the root)."""
    common: list[str] = []
    for x, y in zip(a.split(".") if a else [], b.split(".") if b else []):
        if x != y:
            break
        common.append(x)
    return ".".join(common)


def _record_unrunnable(cand: Candidate, name: str, y_a: NotRunnable, info: ModelGraph, result: LockstepResult) -> None:
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


REARRANGING = SHAPE_OPS - {"size", "dim", "getattr"}  # those three give Python values, not tensors
