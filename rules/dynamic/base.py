"""Shared helpers of the TA7xx rules: they read the comparison results of the dynamic stage
(``ctx.comparisons``) and turn divergences into findings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Iterator

from torchaudit.report import ComparisonResult, Divergence, ErrorStats, Finding, NodeComparison, Status
from torchaudit.rules.engine import Rule

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


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


def error_text(stats: ErrorStats) -> str:
    return f"max abs {stats.max_abs:.3g}, max rel {stats.max_rel:.3g}, cosine {stats.cosine:.6f}"


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
            yield from self.report(result, d)

    def report(self, result: ComparisonResult, d: Divergence) -> Iterator[Finding]:
        yield self.finding(
            self.message(result, d),
            fix=self.fix_text(result, d),
            module=d.module,
            node=d.node,
            location=d.location,
            evidence=evidence(result, d),
        )

    def message(self, result: ComparisonResult, d: Divergence) -> str:
        raise NotImplementedError

    def fix_text(self, result: ComparisonResult, d: Divergence) -> str:
        raise NotImplementedError


def evidence(result: ComparisonResult, d: Divergence) -> dict[str, Any]:
    return {
        "comparison": result.name,
        "reference": str(result.reference),
        "candidate": str(result.candidate),
        "local": d.local.to_dict(),
        "inherited": d.inherited.to_dict(),
        "total": d.total.to_dict(),
    }
