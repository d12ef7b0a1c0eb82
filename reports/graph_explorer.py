"""The HTML page's graph explorer: the module tree and its marks as compact JSON for the inline
script (``templates/report.js`` lays out and draws only the boxes in view), the colour choices,
and the top-level boxes as a table for a reader without JavaScript.

The JSON, one array per field, one entry per tree item (``torchaudit.reports.graph_view``):
``kind`` (a string, one letter per item: ``i`` input, ``o`` op, ``x`` output, ``m`` module,
``g`` a run of ops, ``r`` a range), ``parent`` (-1 at the top), ``label`` (an index into
``strings``), ``name`` ("" where the script derives it, :func:`derived_name`); ``type``
(into ``strings``), ``nodes`` and ``first`` for the items after the graph nodes (a graph node has
no type, is one node and comes first at its own index); ``inputs`` per graph node as offsets back (node ``i`` reads ``i - k``); ``colourings``
per comparison (``worst`` per item, 2 significant digits, ``1e300`` for an infinite error;
``path`` and ``divergence`` as graph node indices); ``findings``: item -> [worst severity rank,
rule codes] for the items that hold findings; ``default``, the colouring the page opens with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from torchaudit.report import Report
from torchaudit.reports.graph_marks import Colouring, colourings, finding_marks
from torchaudit.reports.graph_view import ModuleTree, graph_view_of
from torchaudit.reports.wording import number, plural

_KIND = {"input": "i", "op": "o", "output": "x", "module": "m", "ops": "g", "range": "r"}
INFINITE = 1e300


@dataclass(frozen=True)
class Option:
    value: str  # "c0", "c1", ... (a comparison), "findings" or "none"
    label: str


@dataclass(frozen=True)
class TopRow:
    label: str
    name: str
    type: str
    nodes: str
    worst: str  # under the page's first colouring


@dataclass(frozen=True)
class GraphExplorer:
    data: Markup  # JSON, safe inside <script type="application/json">
    options: tuple[Option, ...]
    default: str
    caption: str
    rows: tuple[TopRow, ...]  # the top-level boxes, for a page read without JavaScript
    worst_heading: str


def ratio_text(value: float | None) -> str:
    """A box's worst local error over tolerance as the page words it."""
    if value is None:
        return "not compared"
    if 1.0 < value < 1.0001:
        return "above 1"
    return number(value)


def _rounded(value: float | None) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value):
        return INFINITE
    return float(f"{value:.2g}")


def _default(marks: tuple[Colouring, ...]) -> str:
    for i, c in enumerate(marks):
        if c.divergence is not None and not c.expected:
            return f"c{i}"
    return "c0" if marks else "findings"


def explorer_data(tree: ModuleTree, marks: tuple[Colouring, ...], severity: tuple[int, ...],
                  codes: dict[int, tuple[str, ...]], default: str) -> dict[str, Any]:
    items, n = tree.items, tree.total_nodes
    strings: dict[str, int] = {}

    def interned(text: str) -> int:
        return strings.setdefault(text, len(strings))

    return {
        "kind": "".join(_KIND[it.kind] for it in items),
        "parent": [it.parent for it in items],
        "label": [interned(it.label) for it in items],
        "type": [interned(it.type) for it in items[n:]],
        "name": [_name(tree, i) for i in range(len(items))],
        "strings": list(strings),
        "nodes": [it.nodes for it in items[n:]],
        "first": [it.first for it in items[n:]],
        "inputs": [[i - j for j in ins] for i, ins in enumerate(tree.inputs)],
        "colourings": [
            {"name": c.name, "label": c.label, "worst": [_rounded(v) for v in c.worst], "path": list(c.path),
             "divergence": c.divergence, "divergenceName": items[c.divergence].name if c.divergence is not None else None,
             "expected": c.expected}
            for c in marks
        ],
        "findings": {str(i): [severity[i], " ".join(c)] for i, c in sorted(codes.items())},
        "default": default,
    }


def _name(tree: ModuleTree, i: int) -> str:
    """The item's name, or "" where the script derives it (:func:`derived_name`)."""
    name = tree.items[i].name
    return "" if name == derived_name(tree, i) else name


def derived_name(tree: ModuleTree, i: int) -> str | None:
    """The name the script gives an item stored without one: a module's is its enclosing
    module's path and its label (``encoder`` + ``layer.0``); an op's, its module's path with
    ``_`` for ``.`` (as fx names a module's call: ``encoder_layer_0_attention_self_query``)."""
    item = tree.items[i]
    outer = next((tree.items[j].name for j in tree.ancestors(i) if tree.items[j].kind == "module"), "")
    if item.kind == "module":
        return f"{outer}.{item.label}" if outer else item.label
    if item.kind == "op" and outer:
        return outer.replace(".", "_")
    return None


def script_json(data: dict[str, Any]) -> Markup:
    """``data`` as JSON that cannot close its <script> element: <, > and & written as \\u escapes."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def graph_explorer(report: Report) -> GraphExplorer | None:
    tree = graph_view_of(report)
    if tree is None:
        return None
    marks = colourings(report, tree)
    severity, codes = finding_marks(report, tree)
    default = _default(marks)
    options = tuple(Option(f"c{i}", c.label) for i, c in enumerate(marks))
    options += (Option("findings", "findings: worst severity inside"), Option("none", "no colour"))
    first = marks[int(default[1:])] if default.startswith("c") else None
    rows = tuple(
        TopRow(it.label, it.name, it.type, f"{it.nodes:,}", ratio_text(first.worst[i]) if first else "")
        for i in tree.top for it in (tree.items[i],)
    )
    caption = (f"{plural(tree.total_nodes, 'graph node')}, opened on {plural(len(tree.top), 'top-level box')}. "
               "Click a box to open it into its modules and ops, click an open box's title bar to close it; "
               "hover a box for its full name, type, node count and worst error.")
    return GraphExplorer(
        data=script_json(explorer_data(tree, marks, severity, codes, default)),
        options=options,
        default=default,
        caption=caption,
        rows=rows,
        worst_heading=f"worst local error / tolerance ({first.name})" if first else "",
    )
