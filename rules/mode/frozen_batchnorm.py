"""TA108: a "frozen" BatchNorm whose statistics still move."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torch.nn.modules.batchnorm import _BatchNorm

from torchaudit.report import Finding, Severity
from torchaudit.rules.astutil import module_finding_args
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    import torch.nn as nn

    from torchaudit.analyzer.context import AuditContext


@register
class FrozenBatchNormInTrainMode(Rule):
    """
    What it finds:
        A BatchNorm layer whose affine parameters all have `requires_grad=False` ("frozen"
        for fine-tuning) but which is in train mode and tracks running statistics.

    Why it matters:
        Freezing parameters does not freeze buffers: every train-mode forward still updates
        `running_mean` and `running_var` with the fine-tuning batches, and normalizes with
        batch statistics, so the pretrained statistics drift away.

    Example:
        `for p in model.bn.parameters(): p.requires_grad_(False)` followed by `model.train()`.
        The silent look-alike also calls `model.bn.eval()` (after every `model.train()`).

    Fix:
        Put frozen BatchNorm layers in eval mode (override `train()` to re-apply it), or
        replace them with `torchvision.ops.FrozenBatchNorm2d`.

    Fact:
        `_BatchNorm.forward` (torch/nn/modules/batchnorm.py) updates the running statistics
        whenever `self.training and self.track_running_stats`, regardless of `requires_grad`.
    """

    code = "TA108"
    severity = Severity.WARNING
    title = "Frozen BatchNorm in train mode"

    def check_module(self, path: str, module: nn.Module, ctx: AuditContext) -> Iterable[Finding]:
        if not (isinstance(module, _BatchNorm) and module.training and module.track_running_stats):
            return
        params = [p for p in (module.weight, module.bias) if p is not None]
        if params and not any(p.requires_grad for p in params):
            yield self.finding(
                f"{type(module).__name__} has requires_grad=False parameters but is in train mode, so its running "
                "statistics still move with every forward",
                fix="call .eval() on frozen BatchNorm layers (re-apply it after every model.train())",
                **module_finding_args(ctx, path),
            )
