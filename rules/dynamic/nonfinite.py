from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Location, Severity
from torchaudit.rules.dynamic.base import comparisons
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class FirstNonFinite(Rule):
    """
    What it finds:
        The first node where NaN or Inf appears in one configuration of a comparison and not
        in the other (for example in float16 but not in float64).

    Why it matters:
        One NaN or Inf poisons everything downstream; the first node where it appears is where
        to look, not the output where it is noticed.

    Example:
        `torch.exp(h)` in float16 with `h` above about 11: `exp(12)` is 162755, beyond
        float16's largest value 65504, so it becomes `inf` and `inf / inf` later is NaN.

    Fix:
        Keep that op in float32, clamp or rescale its input, or use a stable form
        (`torch.sigmoid`, `logsumexp`).

    Fact:
        `torch.finfo(torch.float16).max` is 65504.
    """

    code = "TA706"
    severity = Severity.ERROR
    title = "NaN or Inf first appears in one configuration only"
    needs = frozenset({"dynamic"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        for result in comparisons(ctx):
            nf = result.first_nonfinite
            if not nf:
                continue
            side = result.candidate if nf.get("in") == "candidate" else result.reference
            other = result.reference if nf.get("in") == "candidate" else result.candidate
            loc = nf.get("location")
            module = nf.get("module")
            yield self.finding(
                f"in comparison {result.name!r}, NaN/Inf first appears at node '{nf['node']}' ({nf.get('op')})"
                f"{f' in module {module!r}' if module else ''} in {side} and not in {other}",
                fix="keep that op in higher precision, or clamp/rescale its input",
                module=module,
                node=nf["node"],
                location=Location(loc["file"], loc.get("line"), loc.get("column")) if loc else None,
                evidence={"comparison": result.name, "in": nf.get("in")},
            )
