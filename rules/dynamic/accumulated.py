"""TA708: outputs outside tolerance with no single node to blame."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.report import ComparisonResult, Contribution, Finding, Severity, Status
from torchaudit.rules.dynamic.base import comparisons, kind_of
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext

# A comparison of one configuration against itself (reload, determinism) has no rounding to
# accumulate: an output outside tolerance there is as wrong as a divergent node (TA701, TA702).
# One against a recording (record, recordings) is a regression gate: the same (TA709).
_SEVERITY = {"reload": Severity.ERROR, "determinism": Severity.ERROR, "record": Severity.ERROR, "recordings": Severity.ERROR}


def contribution_text(c: Contribution) -> str:
    where = f"node '{c.node}' ({c.op}{', ' + c.module if c.module else ''}{', ' + str(c.location) if c.location else ''})"
    if c.entered_in is not None:
        inside = f"module '{c.entered_in}'" if c.entered_in else "the top-level forward"
        return (f"{where}: its input gained {c.added:.3g} (relative) in the code of {inside} between node '{c.after}' "
                "and it, which is not compared node by node")
    return f"{where}: adds {c.added:.3g} (relative) of its own"


@register
class AccumulatedError(Rule):
    """
    What it finds:
        A comparison whose model outputs are outside tolerance although no node's own error
        is beyond what its dtype explains: the error accumulated over many nodes, or entered
        in code between the compared nodes (a module's own functional ops when the comparison
        runs at module granularity). Names the nodes that add most of it.

    Why it matters:
        Without it such a comparison would read "matched" while `torch.testing.assert_close`
        on the outputs fails: a deep residual network in bfloat16 drifts a little at every
        block until the output is off, and no one op is to blame.

    Example:
        Forty residual MLP blocks in bfloat16 against float64: each block rounds within
        bfloat16's tolerance, the output differs in 40% of its elements.

    Fix:
        Keep the residual stream (or the layers named) in float32, or accept a looser
        tolerance for this configuration (`--atol`/`--rtol`). Where the error entered in a
        module's own code, look at the ops between the named nodes.

    Fact:
        Tolerances are `torch.testing.assert_close`'s per dtype (torch/testing/_comparison.py,
        `_DTYPE_PRECISIONS`); the outputs count as close when every element is within
        `atol + rtol * |reference|`, as `assert_close` decides.
    """

    code = "TA708"
    severity = Severity.WARNING
    title = "Outputs outside tolerance with no single node to blame"
    needs = frozenset({"dynamic"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        for result in comparisons(ctx):
            if result.status != Status.ACCUMULATED or result.expected_difference or result.name == "checkpoints":
                continue
            yield self._finding(result)

    def _finding(self, result: ComparisonResult) -> Finding:
        out = result.output
        top = result.contributors[0] if result.contributors else None
        most = "; ".join(contribution_text(c) for c in result.contributors)
        return self.finding(
            f"{result.name} ({result.reference} vs {result.candidate}): the outputs are outside tolerance "
            f"({out.get('mismatch_fraction', 0.0):.1%} of elements, max abs {out.get('max_abs', 0.0):.3g}) although "
            f"no node's own error is beyond rounding: the error accumulated" + (f"; most is added at {most}" if most else ""),
            fix="keep the layers named (or the residual stream) in higher precision, or set a looser --atol/--rtol "
                "for this configuration",
            module=top.module if top else None,
            node=top.node if top else None,
            location=top.location if top else None,
            evidence={"comparison": result.name, "reference": str(result.reference), "candidate": str(result.candidate),
                      "output": dict(out), "contributors": [c.to_dict() for c in result.contributors]},
            severity=_SEVERITY.get(kind_of(result), self.severity),
        )
