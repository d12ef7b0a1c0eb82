"""TA107: inventory of mode-sensitive layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules.astutil import module_finding_args
from torchaudit.rules.engine import Rule, register
from torchaudit.rules.mode.common import sensitive_modules

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class ModeSensitiveLayer(Rule):
    """
    What it finds:
        Every layer whose output depends on `train()`/`eval()`: the Dropout family with
        `p > 0`, BatchNorm and InstanceNorm with running statistics, RNN/LSTM/GRU with
        `dropout > 0` between layers, `MultiheadAttention` with dropout, and custom modules
        whose code reads `self.training`.

    Why it matters:
        These are the layers to look at first when eval and train outputs differ, or when a
        reloaded model disagrees with the trained one.

    Example:
        `self.drop = nn.Dropout(0.2)` is listed; `nn.Dropout(0.0)` and `nn.LayerNorm` are not.

    Fix:
        Nothing to fix: an inventory. Make sure the model is in the mode you mean (`eval()`
        for inference).

    Fact:
        `nn.Dropout.forward` calls `F.dropout(input, self.p, self.training, self.inplace)`
        (torch/nn/modules/dropout.py); `_BatchNorm.forward` chooses batch or running statistics
        by `self.training` (torch/nn/modules/batchnorm.py).
    """

    code = "TA107"
    severity = Severity.INFO
    title = "Mode-sensitive layer"

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        for path, _module, why in sensitive_modules(ctx):
            yield self.finding(
                f"{why} behaves differently in train and eval mode",
                fix="nothing to fix; run inference after model.eval()",
                evidence={"kind": why},
                **module_finding_args(ctx, path),
            )
