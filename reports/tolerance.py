"""An error as a multiple of the tolerance a comparison's status uses: one number per node.

The engine (``analyzer/compare/metrics.py``) counts an element as outside tolerance when
``|cand - ref| > atol + rtol * |ref|`` (``torch.testing.assert_close``'s test), and blames a
node when its own (local) error has such elements and rounding in the candidate dtype does not
explain them. A report keeps, per node, ``max_abs``, ``max_rel`` and ``mismatch_fraction``
(the share of elements outside). From them

    ratio = min(max_abs / atol, max_rel / rtol)

bounds the element-wise ``max |cand - ref| / (atol + rtol * |ref|)`` from above, and it is
clamped to the side of 1 that the recorded test says: above 1 when an element is outside (or
the node diverged), at most 1 when none is. So 1 is the tolerance line of the chart and the
graph: a node drawn above it has elements outside ``assert_close``'s band, one at or below has
none; the status additionally asks that rounding does not explain them (a node that diverged
is always above).
"""

from __future__ import annotations

import math

from torchaudit.report import ComparisonResult, ErrorStats, NodeComparison

ABOVE = math.nextafter(1.0, math.inf)  # the least ratio of a node with an element outside tolerance


def has_tolerance(c: ComparisonResult) -> bool:
    return "atol" in c.tolerance and "rtol" in c.tolerance


def tolerance_ratio(stats: ErrorStats, tolerance: dict[str, float], diverged: bool = False) -> float:
    """``stats`` as a multiple of ``tolerance`` (``{"atol": ..., "rtol": ...}``), see the module."""
    atol, rtol = tolerance["atol"], tolerance["rtol"]
    by_abs = _over(stats.max_abs, atol)
    by_rel = _over(stats.max_rel, rtol)
    bound = min(by_abs, by_rel)
    if diverged or (stats.mismatch_fraction > 0 and not stats.max_abs <= 0):  # NaN counts as outside
        return max(bound, ABOVE)
    return min(bound, 1.0)


def _over(value: float, limit: float) -> float:
    if math.isnan(value):
        return math.inf
    if limit > 0:
        return value / limit
    return math.inf if value > 0 else 0.0


def local_ratio(node: NodeComparison, c: ComparisonResult) -> float:
    """The node's own (local) error over the comparison's tolerance; a node that diverged is above 1."""
    return tolerance_ratio(node.local, c.tolerance, node.diverged)


def total_ratio(node: NodeComparison, c: ComparisonResult) -> float:
    """What a user sees at the node (its total error) over the comparison's tolerance."""
    return tolerance_ratio(node.total, c.tolerance)
