"""Shared helpers of the TA7xx rules: they read the comparison results of the dynamic stage
(``ctx.comparisons``) and turn divergences into findings."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator

from torchaudit.report import ComparisonResult, Divergence, ErrorStats, Finding, NodeComparison, Status, exact_dtype
from torchaudit.rules.engine import Rule

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext
    from torchaudit.analyzer.trace.graph import GraphNode


def comparisons(ctx: AuditContext) -> tuple[ComparisonResult, ...]:
    return ctx.comparisons or ()


def kind_of(result: ComparisonResult) -> str:
    """The named comparison a result speaks for; a custom pair by what differs in it."""
    if result.name != "custom":
        return result.name
    ref, cand = result.reference, result.candidate
    if ref.mode != cand.mode:
        return "mode"
    if ref.device != cand.device:
        return "device"
    if ref.dtype != cand.dtype:
        return "dtype"
    return "determinism"


def where(d: Divergence | NodeComparison) -> str:
    module = f" in module '{d.module}'" if d.module else " in the top-level forward"
    line = f" ({d.location})" if d.location else ""
    return f"node '{d.node}' ({d.op}){module}{line}"


def graph_node(ctx: AuditContext, name: str) -> GraphNode | None:
    """The traced graph's node of a comparison's node name (its dtype and shape), if any."""
    return ctx.graph.node(name) if ctx.graph is not None and name in ctx.graph.graph else None


def error_text(stats: ErrorStats, node: GraphNode | None = None) -> str:
    """A node's own error as a user reads it: for an integer or boolean output how many of its
    elements differ (and by how much at most), for a floating one max abs, max rel and cosine."""
    if node is None or not exact_dtype(node.dtype):
        return f"max abs {stats.max_abs:.3g}, max rel {stats.max_rel:.3g}, cosine {stats.cosine:.6f}"
    size = math.prod(node.shape) if node.shape is not None else 0
    if size:
        differ = max(1, round(stats.mismatch_fraction * size)) if stats.mismatch_fraction else 0
        text = f"{differ} of {size} {node.dtype} element{'s' if size != 1 else ''} differ{'s' if differ == 1 else ''}"
    else:
        text = f"{stats.mismatch_fraction:.1%} of the {node.dtype} elements differ"
    return text + (f" (by up to {stats.max_abs:.0f})" if node.dtype != "bool" and stats.max_abs else "")


def could_not_run_text(result: ComparisonResult, d: Divergence | NodeComparison, why: str) -> str:
    """A node the reference could not run: that it failed and why, never placeholder numbers."""
    return f"the reference ({result.reference}) could not run {where(d)}, so nothing was compared there: {why}"


class DivergenceRule(Rule):
    """A rule that reports the first divergent node of the comparisons of one kind."""

    comparison: ClassVar[str]
    needs = frozenset({"dynamic"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        for result in comparisons(ctx):
            if kind_of(result) != self.comparison or result.status != Status.DIVERGED:
                continue
            d = result.first_divergence
            if d is None:
                continue
            yield from self.report(result, d, ctx)

    def report(self, result: ComparisonResult, d: Divergence, ctx: AuditContext) -> Iterator[Finding]:
        why = result.could_not_run(d.node)
        yield self.finding(
            self.message(result, d, error_text(d.local, graph_node(ctx, d.node))) if why is None else self.failed(result, d, why),
            fix=self.fix_text(result, d),
            module=d.module,
            node=d.node,
            location=d.location,
            evidence=evidence(result, d) if why is None else {**evidence(result, d, measured=False), "could_not_run": why},
        )

    def message(self, result: ComparisonResult, d: Divergence, error: str) -> str:
        """The finding for a divergence at ``d`` whose own error reads ``error``."""
        raise NotImplementedError

    def failed(self, result: ComparisonResult, d: Divergence, why: str) -> str:
        """The finding when the reference could not run the node at ``d`` (``why``)."""
        return could_not_run_text(result, d, why)

    def fix_text(self, result: ComparisonResult, d: Divergence) -> str:
        raise NotImplementedError


def evidence(result: ComparisonResult, d: Divergence, measured: bool = True) -> dict[str, Any]:
    """What a divergence finding carries; without the error figures for a node that could not run."""
    out: dict[str, Any] = {
        "comparison": result.name,
        "reference": str(result.reference),
        "candidate": str(result.candidate),
    }
    if measured:
        out.update(local=d.local.to_dict(), inherited=d.inherited.to_dict(), total=d.total.to_dict())
    return out
