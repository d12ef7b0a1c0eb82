"""Collapse the report's graph outline by module into a :class:`GraphView` small enough to draw.

A 5,000-node graph drawn node by node is unreadable and slow to open. The view starts with
one box per top-level module (consecutive top-level modules are merged into ranges when there
are too many, as in a long ``nn.Sequential``) and splits the largest box into its child
modules for as long as the number of boxes stays under the cap, so a small model is drawn
module by module and a large one stays a readable outline. A module whose nodes run at
several separate times (the root's own ops between its children, an attention module around
its projections) gets one box per run, so the boxes follow execution order. Edges between
boxes count the data-flow edges they stand for.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

from torchaudit.report import OutlineNode, Report

DEFAULT_CAP = 60
_SPECIAL = {"placeholder": "inputs", "output": "output"}
_LABEL = {"root": "(root)", "inputs": "(inputs)", "output": "(output)"}
Key = tuple[str, str]  # (kind, module prefix or range label)


@dataclass(frozen=True)
class GraphGroup:
    """One box of the graph view: the nodes made by one module (and its unsplit children)."""

    id: str
    module: str  # dotted module path; "" for the root's own nodes and the inputs/outputs
    label: str
    kind: str  # "module", "range" (consecutive top-level modules), "root", "inputs" or "output"
    module_type: str | None
    nodes: int
    first: int  # execution index of its first node
    ops: tuple[str, ...] = ()  # its most frequent ops, most frequent first
    members: tuple[str, ...] = ()  # for a "range": the top-level modules it stands for

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "module": self.module,
            "label": self.label,
            "kind": self.kind,
            "module_type": self.module_type,
            "nodes": self.nodes,
            "first": self.first,
            "ops": list(self.ops),
            "members": list(self.members),
        }


@dataclass(frozen=True)
class GraphView:
    groups: tuple[GraphGroup, ...]
    edges: tuple[tuple[str, str, int], ...]  # (from group id, to group id, data-flow edges)
    total_nodes: int
    collapsed: bool  # some modules were folded into their parents to respect the cap

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [g.to_dict() for g in self.groups],
            "edges": [list(e) for e in self.edges],
            "total_nodes": self.total_nodes,
            "collapsed": self.collapsed,
        }


def graph_view_of(report: Report) -> GraphView | None:
    """The report's graph collapsed by module; ``None`` when the scan traced no graph."""
    return collapse_graph(report.graph_outline) if report.graph_outline else None



class _Grouping:
    """Which box each node belongs to, for a set of module prefixes."""

    def __init__(self, nodes: list[OutlineNode], ranges: dict[str, str]) -> None:
        self.nodes = nodes
        self.ranges = ranges  # top-level module -> its range label ("0 ... 99")

    def key(self, node: OutlineNode, groups: set[str]) -> Key:
        if node.op in _SPECIAL:
            return (_SPECIAL[node.op], "")
        path = node.module
        while path:
            if path in groups:
                return ("module", path)
            parent = path.rpartition(".")[0]
            if not parent and path in self.ranges:
                return ("range", self.ranges[path])
            path = parent
        return ("root", "")

    def runs(self, groups: set[str]) -> list[tuple[Key, int]]:
        """Each node's box: its group and which run of that group (a new run on each return)."""
        out: list[tuple[Key, int]] = []
        count: dict[Key, int] = {}
        previous: Key | None = None
        for node in self.nodes:
            key = self.key(node, groups)
            if key != previous:
                count[key] = count.get(key, -1) + 1
                previous = key
            out.append((key, count[key]))
        return out

    def boxes(self, groups: set[str]) -> int:
        return len(set(self.runs(groups)))


@lru_cache(maxsize=8)
def collapse_graph(outline: Sequence[OutlineNode], cap: int = DEFAULT_CAP) -> GraphView:
    """Group the outline's nodes by module prefix, splitting largest-first while under ``cap``.
    (Cached: the HTML page and the JSON of one report ask for the same view.)"""
    nodes = list(outline)
    modules = sorted({n.module for n in nodes if n.op not in _SPECIAL and n.module})
    top = list(dict.fromkeys(n.module.split(".")[0] for n in nodes if n.op not in _SPECIAL and n.module))
    ranges = _ranges(top, cap - 4) if len(top) > cap - 4 else {}
    grouping = _Grouping(nodes, ranges)
    groups: set[str] = set() if ranges else set(top)
    splittable = set(groups)
    collapsed = bool(ranges)
    while splittable:
        sizes = Counter(grouping.key(n, groups) for n in nodes)
        prefix = max(splittable, key=lambda g: (sizes.get(("module", g), 0), g))
        splittable.discard(prefix)
        children = _children(prefix, modules)
        if not children:
            continue
        if grouping.boxes(groups | children) > cap:
            collapsed = True
            continue
        groups |= children
        splittable |= children
    return _build(grouping, groups, collapsed)


def _ranges(top: list[str], boxes: int) -> dict[str, str]:
    """Consecutive top-level modules in ``boxes`` chunks, each labelled by its first and last."""
    size = -(-len(top) // max(boxes, 1))
    out: dict[str, str] = {}
    for start in range(0, len(top), size):
        chunk = top[start : start + size]
        label = chunk[0] if len(chunk) == 1 else f"{chunk[0]} \u2026 {chunk[-1]}"
        out.update({name: label for name in chunk})
    return out


def _children(prefix: str, modules: list[str]) -> set[str]:
    depth = prefix.count(".") + 1
    start = prefix + "."
    return {".".join(m.split(".")[: depth + 1]) for m in modules if m.startswith(start)}


def _build(grouping: _Grouping, groups: set[str], collapsed: bool) -> GraphView:
    runs = grouping.runs(groups)
    members: dict[tuple[Key, int], list[tuple[int, OutlineNode]]] = defaultdict(list)
    box_of: dict[str, tuple[Key, int]] = {}
    for index, (node, box) in enumerate(zip(grouping.nodes, runs)):
        members[box].append((index, node))
        box_of[node.name] = box
    total_runs = Counter(key for key, _ in members)
    ordered = sorted(members, key=lambda b: members[b][0][0])
    ids = {box: f"g{i}" for i, box in enumerate(ordered)}
    out: list[GraphGroup] = []
    for box in ordered:
        (kind, module), run = box
        items = members[box]
        ops = Counter(n.op_name for _, n in items if n.op not in _SPECIAL)
        types = {n.module_type for _, n in items if n.module == module and n.module_type}
        label = module if kind in ("module", "range") else _LABEL[kind]
        if total_runs[(kind, module)] > 1:
            part = f"{run + 1}/{total_runs[(kind, module)]}"
            label = f"{label} ({part})" if kind in ("module", "range") else f"{label[:-1]} {part})"
        out.append(
            GraphGroup(
                id=ids[box],
                module=module if kind == "module" else "",
                label=label,
                kind=kind,
                module_type=sorted(types)[0].rsplit(".", 1)[-1] if kind == "module" and len(types) == 1 else None,
                nodes=len(items),
                first=items[0][0],
                ops=tuple(op for op, _ in ops.most_common(3)),
                members=tuple(sorted(m for m, r in grouping.ranges.items() if r == module)) if kind == "range" else (),
            )
        )
    counts: Counter[tuple[str, str]] = Counter()
    for node in grouping.nodes:
        b = box_of.get(node.name)
        for src in node.inputs:
            a = box_of.get(src)
            if a is not None and b is not None and a != b:
                counts[(ids[a], ids[b])] += 1
    edges = tuple(sorted((a, b, n) for (a, b), n in counts.items()))
    return GraphView(groups=tuple(out), edges=edges, total_nodes=len(grouping.nodes), collapsed=collapsed)
