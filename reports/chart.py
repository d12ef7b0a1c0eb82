"""The error chart of a comparison: total and local error per node along execution order.

Geometry is computed here; the template only writes the numbers into an inline SVG that
scales to its box (a viewBox, ``width: 100%``), so it fits a 700 px wide window. The y axis is
the error as a multiple of the tolerance the comparison's status uses
(``torchaudit.reports.tolerance``), logarithmic; the tolerance line sits at 1 and zeros on the
floor line. The x axis is labelled by the top-level module each run of nodes belongs to,
thinned so that labels never overlap. Long graphs are bucketed (the maximum of each bucket is
kept, so no peak is lost); each bucket has a hover title naming its worst node, its op, its
module and its total, local and inherited error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torchaudit.report import ComparisonResult, NodeComparison
from torchaudit.reports.tolerance import has_tolerance, local_ratio, total_ratio
from torchaudit.reports.wording import number

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 14, 40
MAX_POINTS = 200
CHAR_W = 6.6  # an upper estimate of one character's width in the 11 px axis font
LABEL_GAP = 8
MAX_LABEL = 18  # characters; a longer module name is cut, its full name in the label's title


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str
    title: str = ""  # the full name, when the label is cut


@dataclass(frozen=True)
class Hover:
    """An invisible strip over one bucket of nodes whose title is shown on hover."""

    x: float
    width: float
    title: str


@dataclass(frozen=True)
class Marker:
    x: float
    y: float
    label: str
    label_x: float
    anchor: str  # "start" or "end": the label stays inside the plot


@dataclass(frozen=True)
class ErrorChart:
    width: int
    height: int
    left: int
    right: int  # x of the plot's right edge
    top: int
    bottom: int  # y of the plot's bottom edge
    total_points: str
    local_points: str
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]  # one per labelled run of a top-level module, at its middle
    separators: tuple[float, ...]  # x where a labelled run starts
    hovers: tuple[Hover, ...]
    divergent: Marker | None
    tolerance_y: float | None
    tolerance_label: str
    y_label: str
    caption: str


def _finite_or(value: float, fallback: float) -> float:
    return value if math.isfinite(value) else fallback


def _top_module(node: NodeComparison) -> str:
    return node.module.split(".")[0] if node.module else ""


def error_chart(c: ComparisonResult) -> ErrorChart | None:
    """The chart of ``c``'s per-node errors, or ``None`` when it has no nodes."""
    if not c.nodes:
        return None
    ratio = has_tolerance(c)
    if ratio:
        total = [total_ratio(n, c) for n in c.nodes]
        local = [local_ratio(n, c) for n in c.nodes]
    else:  # no tolerance recorded: plain max absolute error, no line
        total = [n.total.max_abs for n in c.nodes]
        local = [n.local.max_abs for n in c.nodes]
    positive = [v for v in total + local if math.isfinite(v) and v > 0] + ([1.0] if ratio else [])
    lo = math.floor(math.log10(min(positive))) - 1 if positive else -12
    hi = math.ceil(math.log10(max(positive))) if positive else 0
    hi = max(hi, lo + 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y_of(v: float) -> float:
        v = _finite_or(v, 10.0**hi)
        exp = math.log10(v) if v > 0 else lo
        return round(TOP + plot_h * (1 - (min(max(exp, lo), hi) - lo) / (hi - lo)), 1)

    n = len(c.nodes)
    bucket = max(1, math.ceil(n / MAX_POINTS))

    def x_of(i: float) -> float:
        return round(LEFT + plot_w * (i / max(n - 1, 1)), 1)

    def points(values: list[float]) -> str:
        out = []
        for start in range(0, n, bucket):
            chunk = values[start : start + bucket]
            peak = max(chunk, key=lambda v: _finite_or(v, float("inf")))
            out.append(f"{x_of(start + (len(chunk) - 1) / 2)},{y_of(peak)}")
        return " ".join(out)

    step = max(1, math.ceil((hi - lo) / 6))
    y_ticks = tuple(Tick(y_of(10.0**e), f"1e{e}" if e else "1") for e in range(lo, hi + 1) if e % step == 0)
    x_ticks, separators = _module_ticks(c.nodes, x_of)
    marker = None
    d = c.first_divergence
    if d is not None:
        index = next((i for i, node in enumerate(c.nodes) if node.node == d.node), None)
        if index is not None:
            x = x_of(index)
            right = x > LEFT + plot_w * 0.7
            marker = Marker(x, y_of(local[index]), f"{d.node} (node {index})", x - 6 if right else x + 6,
                            "end" if right else "start")
    hovers = []
    for start in range(0, n, bucket):
        stop = min(start + bucket, n)
        x0, x1 = max(x_of(start - 0.5), LEFT), min(x_of(stop - 0.5), WIDTH - RIGHT)
        hovers.append(Hover(x0, round(x1 - x0, 1), _hover(c, start, stop, local)))
    tol = c.tolerance
    caption = (
        f"Error per node as a multiple of the tolerance, {n:,} nodes in execution order"
        + (f" (each point the maximum of {bucket} nodes)" if bucket > 1 else "")
        + "; log scale, zeros drawn on the bottom line. "
        + ("The tolerance line is the test the status uses: above it, a node has elements outside "
           f"atol + rtol \u00b7 |reference| (atol {number(tol['atol'])}, rtol {number(tol['rtol'])}); "
           "a node diverges when its own (local) error is above it and rounding does not explain it. "
           if ratio else "")
        + "Hover the plot for each node's errors."
    )
    return ErrorChart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=HEIGHT - BOTTOM,
        total_points=points(total),
        local_points=points(local),
        y_ticks=y_ticks,
        x_ticks=x_ticks,
        separators=separators,
        hovers=tuple(hovers),
        divergent=marker,
        tolerance_y=y_of(1.0) if ratio else None,
        tolerance_label="tolerance" if ratio else "",
        y_label="error / tolerance" if ratio else "max abs error",
        caption=caption,
    )


def _module_ticks(nodes: tuple[NodeComparison, ...], x_of: Callable[[float], float]) -> tuple[tuple[Tick, ...], tuple[float, ...]]:
    """A label at the middle of each run of nodes of one top-level module, longest runs first,
    kept only where it does not overlap a label already placed (the root's own nodes get none)."""
    runs: list[tuple[str, int, int]] = []  # (module, first index, last index)
    for i, node in enumerate(nodes):
        top = _top_module(node)
        if runs and runs[-1][0] == top:
            runs[-1] = (top, runs[-1][1], i)
        else:
            runs.append((top, i, i))
    placed: list[tuple[float, float, Tick, float]] = []  # (left, right, tick, run start x)
    for top, first, last in sorted((r for r in runs if r[0]), key=lambda r: (r[1] - r[2], r[1])):
        label = top if len(top) <= MAX_LABEL else top[: MAX_LABEL - 1] + "\u2026"
        half = len(label) * CHAR_W / 2
        mid = min(max((x_of(first) + x_of(last)) / 2, LEFT + half), WIDTH - RIGHT - half)
        left, right = mid - half - LABEL_GAP / 2, mid + half + LABEL_GAP / 2
        if any(left < r and l < right for l, r, _, _ in placed):
            continue
        start = x_of(first - 0.5) if first else x_of(0)
        placed.append((left, right, Tick(round(mid, 1), label, top if label != top else ""), start))
    placed.sort(key=lambda p: p[0])
    return tuple(p[2] for p in placed), tuple(p[3] for p in placed if p[3] > LEFT)


def _hover(c: ComparisonResult, start: int, stop: int, local: list[float]) -> str:
    """The title of nodes ``start:stop``: the one with the largest local error, and its errors."""
    worst = max(range(start, stop), key=lambda i: _finite_or(local[i], float("inf")))
    node = c.nodes[worst]
    head = f"node {worst}" if stop - start == 1 else f"nodes {start}\u2013{stop - 1}, largest local error: node {worst}"
    lines = [
        f"{head} {node.node} ({node.op}) in {node.module or '<root>'}",
        f"max abs error: total {number(node.total.max_abs)}, local {number(node.local.max_abs)}, "
        f"inherited {number(node.inherited.max_abs)}",
    ]
    if has_tolerance(c):
        lines.append(f"local / tolerance {_ratio_text(local[worst])}" + (", diverged" if node.diverged else ""))
    elif node.diverged:
        lines.append("diverged")
    return "\n".join(lines)


def _ratio_text(value: float) -> str:
    return "above 1" if 1.0 < value < 1.0001 else number(value)
