"""``torchaudit record``: run the model once, node by node, and stream every value to a bundle.

The run is one side of a lockstep comparison played alone: the traced graph on a copy of the
model in the chosen configuration (``device:dtype:mode``), one node at a time
(:class:`~torchaudit.analyzer.compare.sides.FxSide`), each value written as soon as it is made
and freed after its last user, as the lockstep engine frees it. Every node is recorded but
``get_attr`` (parameters, buffers, constants: the fingerprint holds their hash, and a live
side uses its own), so each compared node's inputs are in the bundle and a live scan can feed
them to its own op (the shadow). An in-place op records the inputs it changed again, as they
are after it.

The manifest says what was run (graph, inputs, configuration), where (environment) and on
which model (:func:`fingerprint`: the module tree and parameter names and shapes, and a hash
of every parameter and buffer).
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from torchaudit.analyzer.compare.comparisons import placed, side_inputs
from torchaudit.analyzer.compare.lockstep import vmap_regions
from torchaudit.analyzer.compare.sides import FxSide, RngStream
from torchaudit.analyzer.dtypes import model_dtype
from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.record.bundle import BundleWriter, RecordingError, encode_plain, tensor_digest
from torchaudit.analyzer.record.environment import run_environment
from torchaudit.analyzer.trace.graph import ModelGraph
from torchaudit.analyzer.trace.tracing import TraceError, trace_model
from torchaudit.analyzer.values import flatten
from torchaudit.report import Config

GRANULARITIES = ("op", "module")


def fingerprint(model: nn.Module) -> dict[str, Any]:
    """The model's structure (module tree class names, parameter and buffer names and shapes) and a
    hash of its weights (every parameter's and buffer's dtype and bytes, streamed): two
    recordings of one architecture share ``structure``; other weights change ``weights`` only."""
    modules = [[name, type(m).__qualname__] for name, m in model.named_modules()]  # not the module path: the
    # user's file is imported under another name on another machine
    tensors = [[name, list(t.shape)] for name, t in _state(model)]
    structure = hashlib.sha256(json.dumps([modules, tensors]).encode()).hexdigest()
    return {
        "model_class": type(model).__name__,
        "structure": structure,
        "weights": tensor_digest(_state(model)),
        "parameters": sum(p.numel() for p in model.parameters()),
        "tensors": tensors,
    }


def _state(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False))


def inputs_facts(inputs: ExampleInputs) -> dict[str, Any]:
    """The example inputs as a recording keeps them: described, each leaf's shape and dtype (or
    plain value), and one hash of all their values."""
    flat, _ = flatten((tuple(inputs.args), dict(inputs.kwargs)))
    leaves = [{"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} if isinstance(v, torch.Tensor)
              else encode_plain(v) for v in flat]
    tensors = [(str(i), v) for i, v in enumerate(flat) if isinstance(v, torch.Tensor)]
    return {"describe": inputs.describe(), "source": inputs.source, "leaves": leaves, "sha256": tensor_digest(tensors)}


def record_run(
    model: nn.Module,
    inputs: ExampleInputs,
    cfg: Config,
    output: str | Path,
    *,
    target: dict[str, Any],
    seed: int = 0,
    granularity: str = "op",
    progress: Callable[[int, int], None] | None = None,
    shard_bytes: int | None = None,
) -> dict[str, Any]:
    """Record ``model`` on ``inputs`` in configuration ``cfg`` into the folder ``output``;
    returns the manifest written. ``target`` is the report's target section (what was recorded)."""
    if granularity not in GRANULARITIES:
        raise RecordingError(f"unknown --granularity {granularity!r}", "use op or module")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise RecordingError(f"--device {cfg.device}: CUDA is not available here", "record on a machine with a GPU, or use --device cpu")
    own = model_dtype(model, inputs)
    work = placed(model, cfg, own)
    ins = side_inputs(inputs, cfg, own)
    try:
        graph = trace_model(work, ins, mode=cfg.mode, share_parameters=True)
    except TraceError as exc:
        raise RecordingError(f"the model could not be traced for recording: {str(exc).split('; ')[-1]}",
                             "make the model traceable by torch.fx or torch.export") from exc
    writer = BundleWriter(output, **({"shard_bytes": shard_bytes} if shard_bytes else {}))
    started = datetime.datetime.now(datetime.timezone.utc)
    if graph.gm is None or granularity == "module":
        from torchaudit.analyzer.record.modules import record_modules

        nodes, used = record_modules(work, ins, cfg, seed, writer, progress)
    else:
        nodes, used = _record_ops(graph, work, ins, cfg, seed, writer, progress), "op"
    manifest = {
        "tool": _tool(),
        "created": started.isoformat(timespec="seconds"),
        "meta": False,
        "granularity": used,
        "target": target,
        "config": cfg.to_dict(),
        "seed": seed,
        "environment": run_environment(cfg.device, seed),
        "fingerprint": fingerprint(model),
        "inputs": inputs_facts(inputs),
        "graph": {"tracer": graph.tracer if used == "op" else "hooks", "nodes": nodes},
    }
    return writer.close(manifest)


def _tool() -> dict[str, str]:
    from torchaudit import __version__

    return {"name": "torchaudit", "version": __version__}


def _record_ops(graph: ModelGraph, model: nn.Module, inputs: ExampleInputs, cfg: Config, seed: int,
                writer: BundleWriter, progress: Callable[[int, int], None] | None) -> list[dict[str, Any]]:
    """Every node of the graph run once; the manifest's node list, each with its stored value."""
    side = FxSide(graph, inputs, RngStream(seed, cfg.device), model.forward)
    regions = vmap_regions(side.order, side.nodes)
    region_of = {n: names for names in regions.values() for n in names}
    last_use: dict[str, int] = {}
    for i, name in enumerate(side.order):
        for m in side.input_names(name):
            last_use[m] = i
    nodes: list[dict[str, Any]] = []
    total = len(side.order)
    with torch.no_grad():
        for i, name in enumerate(side.order):
            side.run(name)
            fx = side.nodes[name]
            entry = node_entry(graph, name, side.input_names(name))
            entry["mutates"] = side.mutates(name)
            region = region_of.get(name)
            if region is not None:  # values inside a vmap region are batched: what it hands on is kept once it ends
                entry["in_region"] = True
                if name == region[-1]:
                    _record_region(side, region, nodes, entry, writer)
            elif fx.op != "get_attr":
                entry["value"] = writer.value(name, side.value(name), reuse=fx.op == "output")
            if entry["mutates"]:
                writer.forget()
                changed = {m: writer.value(f"{m}@{name}", side.value(m)) for m in side.input_names(name)
                           if m in side.env and side.nodes[m].op != "get_attr"}
                entry["rewrites"] = changed
            nodes.append(entry)
            for m in [*side.input_names(name), name]:
                if last_use.get(m, -1) <= i:  # what a vmap region hands on is used after it: alive at its end
                    side.free(m)
            if progress is not None:
                progress(i + 1, total)
    return nodes


def _record_region(side: FxSide, region: list[str], nodes: list[dict[str, Any]], last: dict[str, Any],
                   writer: BundleWriter) -> None:
    """A vmap region has run: record the values it hands to the rest of the graph, as the
    lockstep engine compares them (``lockstep.vmap_regions``)."""
    member = set(region)
    entries = {e["name"]: e for e in nodes}
    entries[last["name"]] = last
    for n in region:
        if n in side.env and any(u.name not in member for u in side.nodes[n].users):
            entries[n]["value"] = writer.value(n, side.value(n))


def node_entry(graph: ModelGraph, name: str, inputs: list[str]) -> dict[str, Any]:
    """A node as the manifest describes it (what ``analyzer/record/side.py`` rebuilds a graph from)."""
    n = graph.node(name)
    return {
        "name": n.name, "op": n.op, "target": n.target, "module": n.module, "module_type": n.module_type,
        "module_stack": list(n.module_stack), "shape": list(n.shape) if n.shape is not None else None, "dtype": n.dtype,
        "location": n.location.to_dict() if n.location else None, "inputs": inputs,
    }
