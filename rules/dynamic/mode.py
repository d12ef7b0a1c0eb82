from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity, Status
from torchaudit.rules.dynamic.accumulated import contribution_text
from torchaudit.rules.dynamic.base import comparisons, could_not_run_text, error_text, graph_node, kind_of, where
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class ModeDependentNode(Rule):
    """
    What it finds:
        Nodes whose own output differs between eval and train mode (fed the same inputs),
        one finding per node. This is expected for Dropout and BatchNorm and confirms what
        the TA1xx rules say from the code.

    Why it matters:
        It shows which layers actually behave differently by mode on these inputs, so that a
        mode bug (a model evaluated in train mode, a layer that ignores `eval()`) is found
        where it is, not guessed at.

    Example:
        `nn.BatchNorm1d` normalizes with batch statistics in train mode and with running
        statistics in eval mode; `nn.Dropout` is the identity in eval mode.

    Fix:
        Nothing, when the difference is intended. Otherwise call `model.eval()` before
        inference, and pass `training=self.training` to functional dropout.
    """

    code = "TA707"
    severity = Severity.INFO
    title = "Node output differs between eval and train mode"
    needs = frozenset({"dynamic"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        for result in comparisons(ctx):
            if kind_of(result) != "mode":
                continue
            if result.status == Status.ACCUMULATED:  # no compared node differs: where the difference entered
                for c in result.contributors[:1]:
                    yield self.finding(
                        f"the outputs differ between {result.reference.mode} and {result.candidate.mode} mode, and no "
                        f"compared node's own output does: {contribution_text(c)}",
                        fix="nothing if intended (functional dropout in the module's forward); otherwise pass "
                            "training=self.training to functional ops",
                        module=c.entered_in if c.entered_in is not None else c.module,
                        node=c.node,
                        location=c.location,
                        evidence={"comparison": result.name, "contributors": [x.to_dict() for x in result.contributors]},
                    )
                continue
            if result.status != Status.DIVERGED:
                continue
            for n in result.nodes:
                if not n.diverged:
                    continue
                why = result.could_not_run(n.node)
                yield self.finding(
                    f"{where(n)} gives another output in {result.candidate.mode} mode than in "
                    f"{result.reference.mode} mode on the same inputs: {error_text(n.local, graph_node(ctx, n.node))}"
                    if why is None else could_not_run_text(result, n, why),
                    fix="nothing if intended; otherwise call model.eval() for inference and pass training=self.training to functional ops",
                    module=n.module,
                    node=n.node,
                    location=n.location,
                    evidence={"comparison": result.name, **({"local": n.local.to_dict()} if why is None else {"could_not_run": why})},
                )
