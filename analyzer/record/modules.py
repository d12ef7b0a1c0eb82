"""Module granularity (``record --granularity module``, and models only the hook tracer traces).

The recording keeps each leaf-module call's inputs (as they were before the call: an in-place
module changes them) and output, named as the hook tracer names calls (``encoder_fc1``,
``act_1``); nothing between modules. The live comparison observes the same calls through
forward hooks (like ``pair.hook_pair``): total error per call, and local error from the live
module fed the recorded inputs: error that enters in functional code between modules shows
in the next call's inherited error, and in the contributors when the outputs drift.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn

from torchaudit.analyzer.compare.lockstep import LockstepResult, cast_like, record
from torchaudit.analyzer.compare.metrics import Tolerance, fan_in
from torchaudit.analyzer.compare.sides import RngStream
from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.record.bundle import Bundle, BundleWriter
from torchaudit.analyzer.record.side import rebuild
from torchaudit.analyzer.trace.hooks_graph import HookGraph, call_name, leaf_modules
from torchaudit.analyzer.values import cloned
from torchaudit.report import Config

Hook = Callable[[str], tuple[Callable[..., Any], Callable[..., Any]]]  # path -> (pre-hook, hook)


def _hooked_run(model: nn.Module, inputs: ExampleInputs, mode: str, seed: int, device: str, built: HookGraph,
                make: Hook) -> Any:
    handles = []
    model.train(mode == "train")
    try:
        for path, m in leaf_modules(model):
            pre, post = make(path)
            handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(m.register_forward_hook(post, with_kwargs=True))
        ex = inputs.clone()
        built.inputs(model, ex)
        with torch.no_grad(), RngStream(seed, device).active(), built.flow:
            return model(*ex.args, **ex.kwargs)
    finally:
        for h in handles:
            h.remove()


def record_modules(model: nn.Module, inputs: ExampleInputs, cfg: Config, seed: int, writer: BundleWriter,
                   progress: Callable[[int, int], None] | None) -> tuple[list[dict[str, Any]], str]:
    """Record every leaf-module call; the manifest's nodes and the granularity (``module``)."""
    from torchaudit.analyzer.record.record import node_entry

    built = HookGraph(model)
    counts: dict[str, int] = {}
    stored: dict[str, dict[str, Any]] = {}

    def make(path: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
        def pre(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            name = call_name(path, counts.get(path, 0))
            counts[path] = counts.get(path, 0) + 1
            with built.flow.paused():
                stored[name] = {"call_inputs": writer.value(name + "@in", (args, kwargs))}

        def post(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            name = built.call(path, mod, (args, kwargs), out)
            with built.flow.paused():
                stored.setdefault(name, {})["value"] = writer.value(name, out)
            if progress is not None:
                progress(len(built.order), 0)
        return pre, post

    out = _hooked_run(model, inputs, cfg.mode, seed, cfg.device, built, make)
    built.output(out)
    stored["output"] = {"value": writer.value("output", out)}
    graph = built.graph()
    nodes = []
    for name in graph.order:
        entry = node_entry(graph, name, graph.predecessors(name))
        entry.update(stored.get(name, {}))
        nodes.append(entry)
    return nodes, "module"


def compare_modules(bundle: Bundle, model: nn.Module, inputs: ExampleInputs, live: Config, seed: int, tol: Tolerance,
                    cand_dtype: torch.dtype) -> LockstepResult:
    """The live model's leaf-module calls against the recorded ones (see the module docstring)."""
    entries = {e["name"]: e for e in bundle.manifest["graph"]["nodes"]}
    built = HookGraph(model)
    graph = built.graph()
    result = LockstepResult(graph=graph)
    busy = [False]

    def make(path: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
        def pre(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            return None

        def post(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            if busy[0]:
                return
            name = built.call(path, mod, (args, kwargs), out)
            entry = entries.get(name)
            if entry is None or "value" not in entry:
                return
            with built.flow.paused():
                r_out = rebuild(bundle.leaves(entry["value"]), out)
                r_in = rebuild(bundle.leaves(entry["call_inputs"]), (args, kwargs)) if "call_inputs" in entry else None
                shadow = None
                if r_in is not None:
                    busy[0] = True
                    saved = torch.random.get_rng_state()
                    try:
                        r_args, r_kwargs = cloned(cast_like(r_in, (args, kwargs)))
                        shadow = mod(*r_args, **r_kwargs)
                    finally:
                        torch.random.set_rng_state(saved)
                        busy[0] = False
                if r_out is not None:
                    k = fan_in([args, kwargs, *mod.parameters()])
                    record(result, graph, name, "call_module", path, r_out, out, shadow, tol, cand_dtype, k=k)
        return pre, post

    out_b = _hooked_run(model, inputs, live.mode, seed, live.device, built, make)
    built.output(out_b)
    out_a = rebuild(bundle.leaves(entries["output"]["value"]), out_b) if "output" in entries else None
    if out_a is not None:
        record(result, graph, "output", "output", "output", out_a, out_b, cast_like(out_a, out_b), tol, cand_dtype, k=1)
    result.notes.append("compared at module granularity (the recording holds leaf-module calls only): local error is "
                        "each module's own, fed the recorded inputs")
    return result
