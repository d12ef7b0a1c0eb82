from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.analyzer.load.checkpoint_match import by_owner, listing
from torchaudit.report import Finding, Location, Severity
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class UnexpectedKeys(Rule):
    """
    What it finds:
        Checkpoint entries the model has no place for (after any prefix that TA303
        explains), grouped by the module path they name (by a shorter path when that would
        make more than 50 findings: a checkpoint of another model can hold 80,000 keys).

    Why it matters:
        Weights the training run learned are dropped on load: a layer renamed since the
        checkpoint was saved, or a checkpoint of another architecture.

    Example:
        The checkpoint has `classifier.weight` but the model calls that layer `head`.

    Fix:
        Rename the keys to the model's names before `load_state_dict`, or pass the
        checkpoint of the right model.

    Fact:
        `Module._load_from_state_dict` (torch/nn/modules/module.py) appends them to
        `unexpected_keys`; `load_state_dict(strict=False)` returns them and carries on.
    """

    code = "TA302"
    severity = Severity.WARNING
    title = "Checkpoint keys the model does not have"
    needs = frozenset({"checkpoint", "tree"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        found = ctx.checkpoint_alignment
        if found is None:
            return
        ckpt, al, _ = found
        for mod, names in by_owner(al.unexpected).items():
            yield self.finding(
                f"the checkpoint has {listing(names)} under {mod or '<root>'}, which the model does not have: "
                f"{'they are' if len(names) > 1 else 'it is'} dropped on load",
                fix="rename these keys to the model's names before load_state_dict, or pass the checkpoint of this model",
                location=Location(str(ckpt.path)),
                evidence={"unexpected_keys": [f"{mod}.{n}" if mod else n for n in names]},
            )
