"""A recording as the reference side of a lockstep run.

:class:`RecordedSide` implements the engine's :class:`~torchaudit.analyzer.compare.sides.Side`
protocol over a bundle: ``run`` computes nothing (the values were made on the recording's
machine), ``value`` reads a node's tensors from the bundle's shards (memory-mapped) and
rebuilds them in the structure of the live side's own value, ``free`` drops them. The engine
runs unchanged: its shadow feeds the live op the **recorded** inputs (through its casts), so
a node's local error is its own across machines and torch versions.

:func:`recorded_graph` rebuilds the recording's :class:`ModelGraph` from the manifest (no fx
graph: nothing is run from it), so ``pair.align`` matches its nodes to the live graph's by the
same rules as two live graphs.
"""

from __future__ import annotations

from typing import Any, Mapping

import networkx as nx
import torch

from torchaudit.analyzer.record.bundle import OPAQUE, Bundle
from torchaudit.analyzer.trace.graph import GraphNode, ModelGraph
from torchaudit.analyzer.values import flatten, unflatten
from torchaudit.report import Location


def recorded_graph(manifest: Mapping[str, Any]) -> ModelGraph:
    """The recorded run's graph: names, ops, modules, source lines and data flow."""
    g: nx.DiGraph = nx.DiGraph()
    order: list[str] = []
    for n in manifest["graph"]["nodes"]:
        loc = n.get("location")
        info = GraphNode(
            name=n["name"], op=n["op"], target=n["target"], module=n["module"], module_type=n.get("module_type"),
            module_stack=tuple(n.get("module_stack") or ()), shape=tuple(n["shape"]) if n.get("shape") is not None else None,
            dtype=n.get("dtype"), location=Location(loc["file"], loc.get("line"), loc.get("column")) if loc else None,
        )
        g.add_node(n["name"], info=info)
        order.append(n["name"])
        for m in n.get("inputs", []):
            g.add_edge(m, n["name"])
    return ModelGraph(tracer=manifest["graph"]["tracer"], graph=g, order=order, traced_mode=manifest["config"]["mode"])


class RecordedSide:
    """The recorded run, node by node (see the module docstring). ``alias`` renames recorded
    nodes after the live graph's (``pair.align``)."""

    def __init__(self, bundle: Bundle, alias: Mapping[str, str] | None = None) -> None:
        self.bundle = bundle
        self.alias = dict(alias or {})
        entries = bundle.manifest["graph"]["nodes"]
        self.entries: dict[str, dict[str, Any]] = {self._name(e["name"]): e for e in entries}
        self.order = list(self.entries)
        self.current: dict[str, dict[str, Any]] = {}  # a node's stored value as it is now (after in-place ops)
        self.loaded: dict[str, list[Any]] = {}

    def _name(self, name: str) -> str:
        return self.alias.get(name, name)

    def __contains__(self, name: str) -> bool:
        """Recorded nodes, and every node of a vmap region (it runs whole; what it hands on is recorded)."""
        entry = self.entries.get(name)
        return entry is not None and ("value" in entry or bool(entry.get("in_region")))

    def input_names(self, name: str) -> list[str]:
        return [self._name(m) for m in self.entries[name].get("inputs", [])]

    def mutates(self, name: str) -> bool:
        return bool(self.entries[name].get("mutates"))

    def run(self, name: str) -> None:
        """Nothing to compute; an in-place op of the recorded run makes the inputs it changed
        read as they were after it, as a live side's would."""
        entry = self.entries[name]
        if "value" in entry:
            self.current[name] = entry["value"]
        for m, stored in (entry.get("rewrites") or {}).items():
            self.current[self._name(m)] = stored
            self.loaded.pop(self._name(m), None)

    def run_region(self, names: list[str]) -> None:
        for name in names:
            self.run(name)

    def leaves(self, name: str) -> list[Any] | None:
        """The recorded leaves of node ``name`` (tensors on the CPU, memory-mapped), or ``None``."""
        if name not in self.loaded:
            stored = self.current.get(name) or self.entries.get(name, {}).get("value")
            if stored is None:
                return None
            self.loaded[name] = self.bundle.leaves(stored)
        return self.loaded[name]

    def value(self, name: str, like: Any = None) -> Any:
        """Node ``name``'s recorded value in the structure of ``like`` (the live side's value);
        without ``like``, a lone leaf or the list of leaves. A leaf the recording holds only by
        type (a cache object) is the live side's own; ``None`` when the structures differ."""
        leaves = self.leaves(name)
        return rebuild(leaves, like) if leaves is not None else None

    def free(self, name: str) -> None:
        self.loaded.pop(name, None)


def rebuild(leaves: list[Any], like: Any = None) -> Any:
    """Recorded ``leaves`` in the structure of ``like`` (a leaf held only by type is ``like``'s
    own); without ``like``, a lone leaf or the list of leaves. ``None`` when they do not fit."""
    if like is None:
        if any(v is OPAQUE for v in leaves):
            return None
        return leaves[0] if len(leaves) == 1 else leaves
    flat, spec = flatten(like)
    if len(flat) != len(leaves):
        return None
    merged = [own if rec is OPAQUE else rec for rec, own in zip(leaves, flat)]
    if any(isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor) for a, b in zip(merged, flat)):
        return None
    return unflatten(merged, spec)
