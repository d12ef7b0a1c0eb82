"""TA709: the live model departs from a recorded run (``scan --against``, ``compare``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.report import ComparisonResult, Divergence, Finding, Severity, Status
from torchaudit.rules.dynamic.base import DivergenceRule, comparisons, where

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext

from torchaudit.rules.engine import register


@register
class RecordedRunDiverges(DivergenceRule):
    """
    What it finds:
        A run that departs from a recording of the same model on the same inputs, made on
        another machine, torch version or configuration (`torchaudit record`, then `scan
        --against RUN` or `compare RUN_A RUN_B`). Names the first node whose own error, its
        op fed the recorded inputs, is beyond tolerance (between two recordings: the first
        node whose total error is).

    Why it matters:
        The divergences that cost most appear where two runs cannot share a process: the GPU
        server against the laptop, torch 2.x against 2.y, last month's release against
        today's build. A golden recording gates them in CI like any other regression.

    Example:
        `torchaudit record model.py --output golden/` before a torch upgrade, then `torchaudit
        scan model.py --against golden/` after it: an op whose kernel changed is named.

    Fix:
        Look at the named op under both environments (the report lists what differs between
        them: versions, device, TF32 and cuDNN flags); pin the behaviour (flags, deterministic
        algorithms, higher precision for that op), or record a new golden run if the change
        is intended.

    Fact:
        The recording holds every value a compared node reads, so the live op is fed the
        recorded inputs: its local error is its own, whatever happened upstream on either
        machine (`analyzer/record/side.py`).
    """

    code = "TA709"
    severity = Severity.ERROR
    title = "The run departs from a recorded run"
    comparison = "record"

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        for result in comparisons(ctx):
            if result.name not in ("record", "recordings") or result.status != Status.DIVERGED:
                continue
            if result.first_divergence is not None:
                yield from self.report(result, result.first_divergence, ctx)

    def message(self, result: ComparisonResult, d: Divergence, error: str) -> str:
        if result.name == "recordings":
            return f"recording B ({result.candidate}) departs from recording A ({result.reference}) first at {where(d)}: total error {error}"
        return f"the live run ({result.candidate}) departs from the recording ({result.reference}) at {where(d)}: {error}"

    def fix_text(self, result: ComparisonResult, d: Divergence) -> str:
        return ("compare that op under both environments (the report lists what differs between them) and pin it, "
                "or record a new golden run if the change is intended")
