"""TA105: BatchNorm with ``momentum=None`` (cumulative moving average)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torch.nn.modules.batchnorm import _BatchNorm

from torchaudit.analyzer.load.meta import is_valueless
from torchaudit.report import Finding, Severity
from torchaudit.rules.astutil import module_finding_args
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    import torch.nn as nn

    from torchaudit.analyzer.context import AuditContext


@register
class CumulativeBatchNormMomentum(Rule):
    """
    What it finds:
        A BatchNorm layer with running statistics and `momentum=None`, i.e. a cumulative
        moving average instead of an exponential one.

    Why it matters:
        The update factor is `1 / num_batches_tracked`. On a module whose counter is 0 (fresh,
        or loaded from a checkpoint that reset it) one stray train-mode forward replaces the
        statistics with that single batch's.

    Example:
        `nn.BatchNorm2d(64, momentum=None)`; the default `momentum=0.1` is silent.

    Fix:
        Make sure `num_batches_tracked` is saved and loaded with the statistics and never run
        a train-mode forward after training; or use a numeric momentum.

    Fact:
        `_BatchNorm.forward` (torch/nn/modules/batchnorm.py): `if self.momentum is None:
        exponential_average_factor = 1.0 / float(self.num_batches_tracked)`.
    """

    code = "TA105"
    severity = Severity.INFO
    title = "BatchNorm with a cumulative moving average"

    def check_module(self, path: str, module: nn.Module, ctx: AuditContext) -> Iterable[Finding]:
        if isinstance(module, _BatchNorm) and module.track_running_stats and module.momentum is None:
            tracked = module.num_batches_tracked
            count = None if tracked is None or is_valueless(tracked) else int(tracked.item())  # --meta: no value
            now = f" (now {count})" if count is not None else ""
            yield self.finding(
                f"{type(module).__name__} has momentum=None: its statistics are a cumulative average weighted by "
                f"1/num_batches_tracked{now}, so a stray train-mode forward on a fresh counter overwrites them",
                fix="save and load num_batches_tracked with the statistics and never run train-mode forwards after training, or set a numeric momentum",
                evidence={"num_batches_tracked": count},
                **module_finding_args(ctx, path),
            )
