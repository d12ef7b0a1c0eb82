"""Run one reference/candidate pair: trace each side, then lockstep over the graphs, or, when
only the forward-hook fallback could trace the model, compare module by module.

Each side is traced from its own instance in its own mode, so what a trace bakes in
(``self.training``, Python attributes, tensor constants, ``self.dtype``) belongs to that side;
a side that is a fresh copy in the scan's own configuration would trace to the scan's graph,
so it runs that graph instead (``tracing.rebind``).
"""

from __future__ import annotations

import contextlib
import gc
import io
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn

from torchaudit.analyzer.trace.graph import ModelGraph
from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.compare.lockstep import Explain, GraphsDiffer, LockstepResult, cast_like, lockstep, record
from torchaudit.analyzer.compare.metrics import Tolerance, compare_values, fan_in
from torchaudit.analyzer.compare.streaming import SideWeights
from torchaudit.analyzer.compare.sides import FxSide, PerSampleSide, RngStream, Side, join_samples
from torchaudit.analyzer.trace.hooks_graph import HookGraph, call_name, leaf_modules
from torchaudit.analyzer.trace.tracing import TraceError, rebind, trace_model
from torchaudit.analyzer.values import cloned, map_tensors, tensor_leaves


@dataclass
class SideSpec:
    """What one side runs: its own model instance (already a copy), inputs, mode and seed."""

    model: nn.Module
    inputs: ExampleInputs
    mode: str = "eval"
    seed: int = 0
    device: str = "cpu"
    samples: list[ExampleInputs] | None = None  # per-sample reference of ``batch``
    graph: ModelGraph | None = None  # the scan's own trace, when this side is a fresh copy in its config
    weights: SideWeights | None = None  # --stream-weights: ``model`` is a skeleton, its weights are read per use


def run_pair(
    ref: SideSpec,
    cand: SideSpec,
    tol: Tolerance,
    cand_dtype: torch.dtype,
    *,
    explain: bool = False,
    arbiter: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[LockstepResult, ModelGraph]:
    """Lockstep ``ref`` against ``cand``; returns the result and the candidate's graph.

    ``explain``: the reference has more precision than the candidate, so a node's error is
    weighed against what rounding its inputs to the candidate's dtype explains
    (:func:`explainer`). ``arbiter``: the reference is float64, a judge rather than a
    configuration anyone runs (NaN/Inf that only it makes is a note, not a finding).

    A side that comes with the scan's own graph runs that graph, rebound to its model. Other
    sides are traced without the tracers' run check (a forward pass of each side's own): the
    lockstep runs both graphs next anyway. Should it fail on such a graph, both sides are
    traced again with the check, which moves past a graph that traces but does not run to the
    next tracer of the chain, and the pair runs once more; a failure that is the model's own
    fails again."""
    with _collector_paused():
        g_ref, g_cand, checked = _graphs(ref, cand, run_check=False)
        try:
            return _run(ref, cand, g_ref, g_cand, tol, cand_dtype, explain, arbiter, progress), g_cand
        except Exception:
            if checked:
                raise
        g_ref, g_cand, _ = _graphs(ref, cand, run_check=True)
        return _run(ref, cand, g_ref, g_cand, tol, cand_dtype, explain, arbiter, progress), g_cand


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for one comparison, as ``timeit`` does.

    Tracing and copying make many short-lived Python objects, and a full pass of the
    collector walks every object of the process, torch's own included: one such pass took
    0.17 s of a 2 s comparison of ``benchmarks/bench_compare.py``'s transformer. Reference
    counting still frees every tensor the moment its last user is done; cycles wait for the
    collector, which runs again as soon as the comparison ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _graphs(ref: SideSpec, cand: SideSpec, run_check: bool) -> tuple[ModelGraph, ModelGraph, bool]:
    """Both sides' graphs, and whether both are known to run (checked or the scan's own).
    A streamed side's graph is traced from a fake copy of its skeleton, in its configuration."""
    if cand.weights is not None or ref.weights is not None:
        return _streamed_graph(ref), _streamed_graph(cand), True
    g_cand = rebind(cand.graph, cand.model, cand.mode) if cand.graph is not None else None
    g_ref = rebind(ref.graph, ref.model, ref.mode) if ref.graph is not None and not ref.samples else None
    checked = run_check or (g_cand is not None and g_ref is not None)
    if g_cand is None:
        g_cand = _quiet_trace(cand.model, cand.inputs, cand.mode, run_check)
    if g_ref is None:
        g_ref = _trace_reference(ref, run_check)
    return g_ref, g_cand, checked


def _streamed_graph(side: SideSpec) -> ModelGraph:
    """Traced with the tracers' run check: on fake tensors it costs no arithmetic, and a graph
    that traces but does not run must not reach a run that reads gigabytes first."""
    from torchaudit.analyzer.load.meta import fake_copy

    graph = _quiet_trace(fake_copy(side.model, device=side.device), side.samples[0] if side.samples else side.inputs, side.mode, True,
                         locations=side.samples is None)
    if graph.gm is None:
        raise NotStreamed("only the forward-hook fallback could trace the model, and streamed weights need an fx graph; "
                          "run it without --stream-weights")
    assert side.weights is not None
    missing = side.weights.missing(graph.gm)
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise NotStreamed(f"these tensors could not be materialised from the checkpoint or their modules: "
                          f"{', '.join(missing[:5])}{more}")
    return graph


class NotStreamed(Exception):
    """A comparison that cannot run on streamed weights; the reason says why."""


def _run(
    ref: SideSpec, cand: SideSpec, g_ref: ModelGraph, g_cand: ModelGraph, tol: Tolerance, cand_dtype: torch.dtype,
    explain: bool, arbiter: bool, progress: Callable[[int, int], None] | None,
) -> LockstepResult:
    if g_cand.gm is None or g_ref.gm is None:
        return hook_pair(ref, cand, tol, cand_dtype, arbiter=arbiter)
    ref_rng, cand_rng = RngStream(ref.seed, ref.device), RngStream(cand.seed, cand.device)
    b = FxSide(g_cand, cand.inputs, cand_rng, cand.model.forward, weights=cand.weights)
    notes: list[str] = []
    if ref.samples:
        a: Side = PerSampleSide(g_ref, ref.samples, ref_rng, ref.model.forward, weights=ref.weights)
    else:
        alias = align(g_ref, g_cand)
        if alias:
            moved = sum(1 for k, v in alias.items() if k != v and not v.startswith(REF_ONLY))
            only = sum(1 for v in alias.values() if v.startswith(REF_ONLY))
            notes.append(f"the two sides' graphs differ ({len(g_ref)} and {len(g_cand)} nodes): nodes were matched by "
                         f"module, op and occurrence in the module ({moved} renamed, {only} of the reference's and "
                         f"{len(g_cand) - (len(g_ref) - only)} of the candidate's without a counterpart, not compared)")
        a = FxSide(g_ref, ref.inputs, ref_rng, ref.model.forward, alias=alias, weights=ref.weights)
    explain_rounding = explainer(cand_dtype) if explain else None
    try:
        run = lockstep(a, b, tol, cand_dtype, g_cand, explain=explain_rounding, progress=progress, arbiter=arbiter)
        run.notes[:0] = notes
        return run
    except GraphsDiffer as exc:  # the sides' graphs part where a region must run whole: module by module
        if ref.weights is not None or cand.weights is not None:
            raise NotStreamed(f"{exc}; comparing module by module needs the weights in memory") from None
        result = hook_pair(ref, cand, tol, cand_dtype, arbiter=arbiter)
        result.notes.append(f"compared module by module: {exc}")
        return result


REF_ONLY = "ref-only:"


def align(g_ref: ModelGraph, g_cand: ModelGraph) -> dict[str, str]:
    """The candidate's name for each reference node, where the two graphs differ (a model that
    takes another code path in another dtype: transformers' T5 clamps activations in float16
    only); empty when they are the same graph.

    Nodes are matched by module path, op and occurrence of that op within the module, so an
    extra op in one side's attention does not shift the names of every later node. A
    reference node without a counterpart gets a name no candidate node has (it still runs,
    and feeds its own users, but is never compared or fed to a shadow)."""
    ref_sig = [(n.name, n.op, n.op_name, n.module) for n in g_ref]
    cand_sig = [(n.name, n.op, n.op_name, n.module) for n in g_cand]
    if ref_sig == cand_sig:
        return {}
    cand_by_key = {key: name for key, name in _keys(g_cand)}
    return {name: cand_by_key.get(key, REF_ONLY + name) for key, name in _keys(g_ref)}


def _keys(graph: ModelGraph) -> list[tuple[tuple[str, ...], str]]:
    counts: dict[tuple[str, str, str], int] = {}
    out = []
    for n in graph:
        if n.op in ("placeholder", "output"):
            key: tuple[str, ...] = (n.op, n.name)
        elif n.op == "get_attr":
            key = (n.op, n.target)
        else:
            base = (n.module, n.op, n.op_name)
            counts[base] = counts.get(base, 0) + 1
            key = (*base, str(counts[base]))
        out.append((key, n.name))
    return out


def _trace_reference(ref: SideSpec, run_check: bool) -> ModelGraph:
    """The reference's graph; a per-sample reference is traced on one sample where it can be
    (export bakes shapes in), else on the whole batch (fx graphs do not depend on it). The
    per-sample side takes an op that fails on one sample for one that needs the batch, so its
    graph is always run-checked: a graph that does not run at all must not pass for that."""
    if ref.samples:
        try:
            return _quiet_trace(ref.model, ref.samples[0], ref.mode, True, locations=False)
        except TraceError:
            pass
        return _quiet_trace(ref.model, ref.inputs, ref.mode, True, locations=False)
    return _quiet_trace(ref.model, ref.inputs, ref.mode, run_check, locations=False)


def _quiet_trace(model: nn.Module, inputs: ExampleInputs, mode: str, run_check: bool, locations: bool = True) -> ModelGraph:
    """Tracers that fail print graphs and tracebacks (ShapeProp, export); the scan's own trace
    already reported why, so the comparisons' traces keep stderr clean. A side's model is a
    private copy already: the tracer's copies share its parameters. Findings name the
    candidate's nodes, so only its graph needs source lines."""
    with contextlib.redirect_stderr(io.StringIO()):
        return trace_model(model, inputs, mode=mode, run_check=run_check, share_parameters=True, locations=locations)


def explainer(cand_dtype: torch.dtype) -> Explain:
    """How far the reference op moves when its inputs are rounded to the candidate dtype.

    ``rounded(m)`` is input ``m`` as the engine cast it for the shadow (rounded to the
    candidate's dtype, on its device), or ``None``; it is brought back to the dtype and device
    of the reference's output here. An input not at hand is rounded from the reference's own
    value."""
    fp64 = Tolerance.for_dtype(torch.float64)

    def round_trip(v: torch.Tensor) -> torch.Tensor:
        return v.to(cand_dtype).to(v.dtype) if v.is_floating_point() else v

    def back(v: Any, like: torch.Tensor) -> Any:
        def to_like(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=like.device, dtype=like.dtype) if t.is_floating_point() else t.to(like.device)

        return map_tensors(to_like, v)

    def explain(ref: Side, name: str, y_a: Any, rounded: Callable[[str], Any]) -> float:
        like = next((t for t in tensor_leaves(y_a) if t.is_floating_point()), None)
        if not isinstance(ref, FxSide) or like is None:
            return 0.0
        missing = [m for m in ref.input_names(name) if rounded(m) is None and m not in ref.env]
        if missing:  # an in-place op dropped the casts and the values are gone: nothing to rerun
            return 0.0

        def value(m: str) -> Any:
            v = rounded(m)
            return back(v, like) if v is not None else map_tensors(round_trip, ref.env[m])

        args, kwargs = ref.args_from(name, value)
        if ref.mutates(name):  # the op writes into its inputs: not into the engine's casts
            args, kwargs = cloned(args), cloned(kwargs)
        with ref.rng.active(advance=False):
            y = ref.execute(name, args, kwargs)
        acc = compare_values(y_a, y, fp64, torch.float64)
        return acc.norm_rel if acc is not None else 0.0

    return explain


def hook_pair(
    ref: SideSpec, cand: SideSpec, tol: Tolerance, cand_dtype: torch.dtype, *, arbiter: bool = False,
) -> LockstepResult:
    """Module granularity: leaf-module outputs of both runs, each with its shadow (the
    candidate's module fed the reference module's inputs), recorded like the op-level nodes.
    The candidate's run builds its own module graph as it goes (:class:`HookGraph`: names,
    modules, source lines, data flow), so every node it records has a module and a line and
    error that enters between two compared modules can be placed."""
    recorded: dict[str, list[tuple[Any, Any, Any]]] = {}  # node -> (args, kwargs, output) per reference run
    built = HookGraph(cand.model)
    graph = built.graph()  # a view: it sees the nodes added as the run goes
    result = LockstepResult(arbiter=arbiter, graph=graph)
    ref_rng, cand_rng = RngStream(ref.seed, ref.device), RngStream(cand.seed, cand.device)
    state = {"busy": False}
    ref_counts: dict[str, int] = {}

    def ref_hook(path: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            c = ref_counts.get(path, 0)
            ref_counts[path] = c + 1
            recorded.setdefault(call_name(path, c), []).append((args, kwargs, out))
        return hook

    def cand_hook(path: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            if state["busy"]:
                return
            name = built.call(path, mod, (args, kwargs), out)
            if name not in recorded:
                return
            runs = recorded.pop(name)
            if len(runs) == 1:
                r_args, r_kwargs, r_out = runs[0]
            else:  # the per-sample reference of ``batch``: its runs joined into a batch
                r_args, r_kwargs = join_samples([r[0] for r in runs], args), join_samples([r[1] for r in runs], kwargs)
                r_out = join_samples([r[2] for r in runs], out)
                if r_out is None:
                    result.notes.append(f"{name}: the samples' outputs do not join into the batch's; not compared")
                    return
            state["busy"] = True
            saved = torch.random.get_rng_state()
            with built.flow.paused():
                try:  # never fed inputs it did not see on its own side: without them, no shadow (its error is its own)
                    shadow = mod(*cast_like(r_args, args), **cast_like(r_kwargs, kwargs)) if r_args is not None and r_kwargs is not None else None
                finally:
                    torch.random.set_rng_state(saved)
                    state["busy"] = False
                k = fan_in([args, kwargs, *mod.parameters()])
                record(result, graph, name, "call_module", path, r_out, out, shadow, tol, cand_dtype, k=k)
        return hook

    if ref.samples:
        outs = []
        for sample in ref.samples:
            ref_counts.clear()
            outs.append(_run_hooked(ref.model, sample, ref.mode, ref_rng, ref_hook))
    else:
        outs = [_run_hooked(ref.model, ref.inputs, ref.mode, ref_rng, ref_hook)]
    out_b = _run_hooked(cand.model, cand.inputs, cand.mode, cand_rng, cand_hook, built)
    built.output(out_b)
    out_a = outs[0] if len(outs) == 1 else join_samples(outs, out_b)
    if out_a is None:
        result.notes.append("the samples' outputs do not join into the batch's output (a cache object per run); "
                            "the modules' outputs were compared, the model's output was not")
        return result
    record(result, graph, "output", "output", "output", out_a, out_b, cast_like(out_a, out_b), tol, cand_dtype, k=1)
    return result


def _run_hooked(model: nn.Module, inputs: ExampleInputs, mode: str, rng: RngStream, make: Callable[[str], Any],
                built: HookGraph | None = None) -> Any:
    handles = []
    model.train(mode == "train")
    try:
        for path, m in leaf_modules(model):
            handles.append(m.register_forward_hook(make(path), with_kwargs=True))
        ex = inputs.clone()
        if built is not None:
            built.inputs(model, ex)
        with torch.no_grad(), rng.active(), built.flow if built is not None else contextlib.nullcontext():
            return model(*ex.args, **ex.kwargs)
    finally:
        for h in handles:
            h.remove()
