from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torch.nn.modules.batchnorm import _NormBase

from torchaudit.analyzer.load.stored_values import all_equal
from torchaudit.report import Finding, Location, Severity
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class BatchNormStatsNeverAccumulated(Rule):
    """
    What it finds:
        BatchNorm (and InstanceNorm with `track_running_stats=True`) layers whose statistics
        in the checkpoint are still their initial values: `running_mean` all 0,
        `running_var` all 1 and `num_batches_tracked` 0.

    Why it matters:
        In eval mode BatchNorm normalizes with the running statistics. Initial ones mean the
        layer never saw training data in train mode (trained in eval mode, frozen too early,
        or statistics reset before saving): eval outputs are wrong while train-mode outputs
        look fine.

    Example:
        A fine-tuning loop that called `model.eval()` before training, then saved:
        `bn.running_mean` is all zeros in the checkpoint.

    Fix:
        Run training (or a calibration pass over training data) in train mode before saving,
        or check that the checkpoint is the trained one.

    Fact:
        `_NormBase.reset_running_stats` (torch/nn/modules/batchnorm.py) sets
        `running_mean.zero_()`, `running_var.fill_(1)`, `num_batches_tracked.zero_()`; only a
        train-mode forward updates them.
    """

    code = "TA306"
    severity = Severity.WARNING
    title = "BatchNorm statistics never accumulated"
    needs = frozenset({"checkpoint", "tree", "values"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        found = ctx.checkpoint_alignment
        if found is None:
            return
        ckpt, al, _ = found
        tensors = ckpt.tensors
        if tensors is None:
            return
        to_ckpt = {m: c for c, m in al.to_model.items()}
        for path, module in ctx.model.named_modules():
            if not isinstance(module, _NormBase) or not module.track_running_stats:
                continue
            pre = f"{path}." if path else ""
            keys = [to_ckpt.get(pre + n) for n in ("running_mean", "running_var", "num_batches_tracked")]
            if keys[0] is None or keys[1] is None:
                continue
            count = tensors[keys[2]] if keys[2] is not None else None
            # stored values, not views: a stride-0 running_mean of 2**30 elements is one value
            if not (all_equal(tensors[keys[0]], 0) and all_equal(tensors[keys[1]], 1)):
                continue
            if count is not None and not all_equal(count, 0):
                continue
            yield self.finding(
                f"{path or '<root>'} has its initial statistics in the checkpoint (running_mean all 0, running_var all 1"
                f"{', num_batches_tracked 0' if count is not None else ''}): eval-mode outputs will be wrong",
                fix="run training or a calibration pass in train mode before saving, or load the trained checkpoint",
                module=path,
                location=Location(str(ckpt.path)),
                evidence={"keys": [k for k in keys if k]},
            )
