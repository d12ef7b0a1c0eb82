"""The JSON report (DESIGN.md, ``schema_version`` 1)."""

from __future__ import annotations

import json
import math
from typing import Any

from torchaudit.report import Report


def finite(obj: Any) -> Any:
    """JSON has no NaN or Infinity: write them as strings so every parser reads the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def report_data(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data, with the graph view the HTML page draws."""
    data = report.to_dict()
    view = graph_view_data(report)
    if view is not None:
        data["graph_view"] = view
    return finite(data)


def graph_view_data(report: Report) -> dict[str, Any] | None:
    """The modules the HTML graph draws (``reports/graph_view.py``), each with its enclosing
    one, its node count, its first node's execution index and, per comparison with per-node
    records, the worst local error of its nodes over the tolerance (above 1: elements outside
    it); and per comparison the nodes from the inputs to its first divergence."""
    from torchaudit.reports.graph_marks import colourings
    from torchaudit.reports.graph_view import graph_view_of

    tree = graph_view_of(report)
    if tree is None:
        return None
    marks = colourings(report, tree)
    modules = []
    for i, item in enumerate(tree.items):
        if item.kind != "module":
            continue
        parent = next((tree.items[j].name for j in tree.ancestors(i) if tree.items[j].kind == "module"), None)
        worst = {c.name: c.worst[i] for c in marks if c.worst[i] is not None}
        modules.append({"module": item.name, "type": item.type, "parent": parent, "nodes": item.nodes,
                        "first": item.first, "worst_local": worst})
    return {
        "total_nodes": tree.total_nodes,
        "modules": modules,
        "divergence_paths": {c.name: [tree.items[i].name for i in c.path] for c in marks if c.path},
    }


def render_json(report: Report) -> str:
    return json.dumps(report_data(report), indent=2, allow_nan=False, default=str)
