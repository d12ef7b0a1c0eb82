"""The error chart of a comparison: total and local error per node along execution order.

Geometry is computed here; the template only writes the numbers into an inline SVG. The
y axis is logarithmic (errors span many orders of magnitude); zeros sit on the floor line.
Long graphs are bucketed (the maximum of each bucket is kept, so no peak is lost).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torchaudit.reports.wording import number
from torchaudit.report import ComparisonResult

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 40
MAX_POINTS = 400


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str


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
    x_ticks: tuple[Tick, ...]
    divergent: Marker | None
    tolerance_y: float | None
    tolerance_label: str
    caption: str


def _finite_or(value: float, fallback: float) -> float:
    return value if math.isfinite(value) else fallback


def error_chart(c: ComparisonResult) -> ErrorChart | None:
    """The chart of ``c``'s per-node errors, or ``None`` when it has no nodes."""
    if not c.nodes:
        return None
    total = [n.total.max_abs for n in c.nodes]
    local = [n.local.max_abs for n in c.nodes]
    positive = [v for v in total + local if math.isfinite(v) and v > 0]
    atol = c.tolerance.get("atol")
    if atol and atol > 0:
        positive.append(atol)
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
    y_ticks = tuple(Tick(y_of(10.0**e), f"1e{e}") for e in range(lo, hi + 1, step))
    x_step = max(1, math.ceil(n / 8))
    x_ticks = tuple(Tick(x_of(i), str(i)) for i in range(0, n, x_step))
    marker = None
    d = c.first_divergence
    if d is not None:
        index = next((i for i, node in enumerate(c.nodes) if node.node == d.node), None)
        if index is not None:
            x = x_of(index)
            right = x > LEFT + plot_w * 0.7
            marker = Marker(x, y_of(local[index]), f"{d.node} (node {index})", x - 6 if right else x + 6,
                            "end" if right else "start")
    tolerance_y = y_of(atol) if atol and atol > 0 else None
    caption = (
        f"Max absolute error per node, {n:,} nodes in execution order"
        + (f" (each point the maximum of {bucket} nodes)" if bucket > 1 else "")
        + "; log scale, zeros drawn on the bottom line."
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
        divergent=marker,
        tolerance_y=tolerance_y,
        tolerance_label=f"atol {number(atol)}" if tolerance_y is not None else "",
        caption=caption,
    )
