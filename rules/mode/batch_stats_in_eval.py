"""TA104: BatchNorm without running statistics normalizes with batch statistics in eval."""

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
class BatchStatisticsInEval(Rule):
    """
    What it finds:
        A BatchNorm layer (`BatchNorm1d/2d/3d`, `SyncBatchNorm`, the lazy variants) built with
        `track_running_stats=False`.

    Why it matters:
        Without running statistics it normalizes with the current batch's mean and variance
        even after `model.eval()`: a sample's output depends on the other samples of its
        batch, and a batch of one gives garbage (or an error).

    Example:
        `nn.BatchNorm1d(32, track_running_stats=False)`. A default `nn.BatchNorm1d(32)` is
        silent, and so is InstanceNorm without running statistics: it normalizes each sample
        on its own, so nothing mixes across the batch.

    Fix:
        Keep `track_running_stats=True` (the default) and train it, or use a per-sample norm
        (`GroupNorm`, `LayerNorm`) if batch statistics are not wanted.

    Fact:
        `_BatchNorm.forward` (torch/nn/modules/batchnorm.py) sets
        `bn_training = (self.running_mean is None) and (self.running_var is None)` in eval
        mode, and `track_running_stats=False` leaves both buffers None.
    """

    code = "TA104"
    severity = Severity.WARNING
    title = "BatchNorm uses batch statistics in eval mode"

    def check_module(self, path: str, module: nn.Module, ctx: AuditContext) -> Iterable[Finding]:
        if isinstance(module, _BatchNorm) and module.running_mean is None and module.running_var is None:
            yield self.finding(
                f"{type(module).__name__} has track_running_stats=False, so in eval mode it still normalizes with "
                "each batch's own statistics: a sample's output depends on its batch",
                fix="keep track_running_stats=True (the default), or use GroupNorm/LayerNorm for per-sample normalization",
                **module_finding_args(ctx, path),
            )
