"""TA106: the model as built or loaded is in train mode and has mode-sensitive layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules.astutil import module_finding_args
from torchaudit.rules.engine import Rule, register
from torchaudit.rules.mode.common import sensitive_modules

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class ModelInTrainMode(Rule):
    """
    What it finds:
        The model as the target builds it (or as a checkpoint loads it) is in train mode and
        contains mode-sensitive layers (dropout, BatchNorm with running statistics, ...). When
        the root is in eval mode but some mode-sensitive submodules were put back in train
        mode, each of those is reported.

    Why it matters:
        Inference in this state is stochastic (dropout) or batch-dependent and mutating
        (BatchNorm updates its running statistics on every call).

    Example:
        `def build_model(): return Classifier()`: a new module starts in train mode. The
        silent look-alike returns `Classifier().eval()`.

    Fix:
        Call `model.eval()` after building or loading the model for inference; the flag is not
        saved in a checkpoint.

    Fact:
        `Module.__init__` sets `self.training = True` (torch/nn/modules/module.py), and
        `_save_to_state_dict` writes only parameters and persistent buffers, so a loaded
        model is in whatever mode its constructor left it.
    """

    code = "TA106"
    severity = Severity.WARNING
    title = "Model is in train mode"

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        active = [(p, why) for p, m, why in sensitive_modules(ctx) if m.training]
        if not active:
            return
        if ctx.model.training:
            shown = ", ".join(f"{p or '<root>'}: {why}" for p, why in active[:3])
            more = f" and {len(active) - 3} more" if len(active) > 3 else ""
            yield self.finding(
                f"the model is in train mode with {len(active)} mode-sensitive layer{'s' if len(active) != 1 else ''} "
                f"({shown}{more}): inference in this state is stochastic or batch-dependent",
                fix="call model.eval() after building or loading the model for inference",
                module="",
                evidence={"layers": [p for p, _ in active]},
            )
            return
        for path, why in active:
            yield self.finding(
                f"{why} is in train mode inside an eval-mode model",
                fix="call .eval() on it too, unless train-mode behaviour at inference is deliberate",
                **module_finding_args(ctx, path),
            )
