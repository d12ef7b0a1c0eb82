from __future__ import annotations

from torchaudit.report import ComparisonResult, Divergence, Severity
from torchaudit.rules.dynamic.base import DivergenceRule, where
from torchaudit.rules.engine import register


@register
class BatchDependentEval(DivergenceRule):
    """
    What it finds:
        In eval mode a sample's output depends on the other samples of its batch: running each
        sample alone and running the whole batch part at the named node.

    Why it matters:
        A prediction should not change with what else is in the batch. Batch statistics in
        eval (BatchNorm with `track_running_stats=False`, or any normalization over dim 0)
        make results depend on batch size and composition, so serving one request at a time
        disagrees with offline batched evaluation.

    Example:
        `nn.BatchNorm1d(64, track_running_stats=False)`: it normalizes with the statistics of
        the current batch even in eval mode.

    Fix:
        Keep running statistics (`track_running_stats=True`) or use a per-sample
        normalization (LayerNorm, GroupNorm).

    Fact:
        `_BatchNorm.forward` uses batch statistics when `self.training` or when
        `running_mean`/`running_var` are None (torch/nn/modules/batchnorm.py, `bn_training`).
    """

    code = "TA703"
    severity = Severity.WARNING
    title = "Eval-mode output depends on the rest of the batch"
    comparison = "batch"

    def message(self, result: ComparisonResult, d: Divergence, error: str) -> str:
        return f"each sample alone and the whole batch part at {where(d)}: {error}"

    def failed(self, result: ComparisonResult, d: Divergence, why: str) -> str:
        return f"each sample alone cannot run {where(d)}, the whole batch can: it needs the rest of the batch ({why})"

    def fix_text(self, result: ComparisonResult, d: Divergence) -> str:
        return "use running statistics in eval (track_running_stats=True) or a per-sample normalization"
