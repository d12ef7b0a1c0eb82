"""Lay out the report's :class:`GraphView` in layers with networkx, coloured by findings.

Boxes are modules (the view is already collapsed by module, see
``torchaudit.reports.graph_view``); layers come from ``networkx.topological_generations``
of the data flow, top to bottom, and within a layer boxes keep execution order. A box's fill
is the worst severity of the findings in its module; a box whose module holds a comparison's
first divergent node gets a red border (not for an expected difference: eval against train).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import networkx as nx

from torchaudit.report import Report
from torchaudit.reports.graph_view import GraphGroup, graph_view_of
from torchaudit.reports.wording import plural

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 190, 46, 24, 34, 12


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int
    height: int
    label: str
    sublabel: str
    css: str  # "sev-error", "sev-warning", "sev-info" or "sev-none", plus " diverged"
    tooltip: str


@dataclass(frozen=True)
class Edge:
    path: str
    width: float


@dataclass(frozen=True)
class GraphDrawing:
    width: int
    height: int
    boxes: tuple[Box, ...]
    edges: tuple[Edge, ...]
    caption: str


def _owners(module: str | None, groups: tuple[GraphGroup, ...]) -> list[GraphGroup]:
    """The boxes that hold ``module``: every run of the deepest module group that contains it,
    else the range of top-level modules it falls in, else the root's own boxes."""
    if module is None:
        return []
    best = max((len(g.module) for g in groups if g.kind == "module" and _within(module, g.module)), default=-1)
    if best >= 0:
        return [g for g in groups if g.kind == "module" and len(g.module) == best and _within(module, g.module)]
    top = module.split(".")[0]
    ranged = [g for g in groups if g.kind == "range" and top in g.members]
    return ranged or [g for g in groups if g.kind == "root"]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _marks(report: Report, groups: tuple[GraphGroup, ...]) -> tuple[dict[str, list[str]], dict[str, int], set[str]]:
    codes: dict[str, list[str]] = defaultdict(list)
    worst: dict[str, int] = {}
    for f in report.findings:
        if f.module is None or (f.module == "" and f.node is None):  # model-wide: colours no box
            continue
        for g in _owners(f.module, groups):
            codes[g.id].append(f.rule)
            worst[g.id] = max(worst.get(g.id, 0), f.severity.rank)
    diverged = {
        g.id
        for c in report.comparisons
        if c.first_divergence is not None and not c.expected_difference  # eval vs train: information, not a fault
        for g in _owners(c.first_divergence.module or "", groups)
    }
    return codes, worst, diverged


def _layers(report: Report) -> list[list[GraphGroup]]:
    view = graph_view_of(report)
    assert view is not None
    by_id = {g.id: g for g in view.groups}
    dag = nx.DiGraph()
    dag.add_nodes_from(by_id)
    # keep the edges that run forward in execution order, so the collapsed graph is acyclic
    dag.add_edges_from((a, b) for a, b, _ in view.edges if by_id[a].first < by_id[b].first)
    return [sorted((by_id[i] for i in layer), key=lambda g: g.first) for layer in nx.topological_generations(dag)]


def graph_drawing(report: Report) -> GraphDrawing | None:
    view = graph_view_of(report)
    if view is None or not view.groups:
        return None
    layers = _layers(report)
    codes, worst, diverged = _marks(report, view.groups)
    widest = max(len(layer) for layer in layers)
    width = MARGIN * 2 + widest * BOX_W + (widest - 1) * GAP_X
    pos: dict[str, tuple[int, int]] = {}
    boxes = []
    severity_css = {3: "sev-error", 2: "sev-warning", 1: "sev-info"}
    for row, layer in enumerate(layers):
        row_w = len(layer) * BOX_W + (len(layer) - 1) * GAP_X
        x0 = (width - row_w) // 2
        for col, g in enumerate(layer):
            x, y = x0 + col * (BOX_W + GAP_X), MARGIN + row * (BOX_H + GAP_Y)
            pos[g.id] = (x, y)
            css = severity_css.get(worst.get(g.id, 0), "sev-none") + (" diverged" if g.id in diverged else "")
            sub = ", ".join(filter(None, [g.module_type, plural(g.nodes, "node")]))
            tip = [g.label, sub]
            if g.ops:
                tip.append("ops: " + ", ".join(g.ops))
            if codes.get(g.id):
                tip.append("findings: " + ", ".join(sorted(set(codes[g.id]))))
            if g.id in diverged:
                tip.append("a comparison's first divergence lies in this module")
            label = g.label if len(g.label) <= 26 else "\u2026" + g.label[-25:]
            boxes.append(Box(x, y, BOX_W, BOX_H, label, sub, css, "\n".join(tip)))
    edges = []
    by_id = {g.id: g for g in view.groups}
    for a, b, count in view.edges:
        if by_id[a].first >= by_id[b].first:
            continue
        (xa, ya), (xb, yb) = pos[a], pos[b]
        x1, y1, x2, y2 = xa + BOX_W // 2, ya + BOX_H, xb + BOX_W // 2, yb
        mid = (y1 + y2) / 2
        edges.append(Edge(f"M{x1},{y1} C{x1},{mid} {x2},{mid} {x2},{y2}", min(1 + count / 4, 4)))
    height = MARGIN * 2 + len(layers) * BOX_H + (len(layers) - 1) * GAP_Y
    caption = f"{plural(view.total_nodes, 'graph node')} drawn as {plural(len(view.groups), 'module box')}"
    if view.collapsed:
        caption += "; small modules are folded into their parents to keep the drawing readable"
    return GraphDrawing(width, height, tuple(boxes), tuple(edges), caption + ".")
