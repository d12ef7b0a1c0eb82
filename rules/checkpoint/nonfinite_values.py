from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch

from torchaudit.report import Finding, Location, Severity
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class NonFiniteValues(Rule):
    """
    What it finds:
        Checkpoint tensors that contain NaN or Inf, with how many of each. Safetensors files
        are read one tensor at a time.

    Why it matters:
        One NaN weight makes every output that depends on it NaN; training that diverged
        often still saves a checkpoint, and a gate on loss curves alone lets it through.

    Example:
        A run that overflowed in float16 saved `fc.weight` with a few `inf` entries.

    Fix:
        Use an earlier checkpoint from before the divergence; find its cause with
        `torchaudit scan --compare dtype`.

    Fact:
        `torch.isfinite` is False exactly for NaN and +-Inf (torch/_refs/__init__.py,
        `isfinite`); integer tensors are always finite.
    """

    code = "TA307"
    severity = Severity.ERROR
    title = "NaN or Inf values in the checkpoint"
    needs = frozenset({"checkpoint", "values"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        ckpt = ctx.checkpoint
        if ckpt is None or ckpt.tensors is None:
            return
        for key in ckpt.tensors:
            t = ckpt.tensors[key]
            if not (t.is_floating_point() or t.is_complex()) or t.device.type == "meta":
                continue
            if bool(torch.isfinite(t).all()):
                continue
            nan = int(torch.isnan(t).sum())
            inf = int(torch.isinf(t).sum())
            yield self.finding(
                f"checkpoint tensor {key} holds {nan} NaN and {inf} Inf of {t.numel()} values",
                fix="use a checkpoint from before training diverged",
                module=key.rpartition(".")[0],
                location=Location(str(ckpt.path)),
                evidence={"key": key, "nan": nan, "inf": inf, "numel": t.numel()},
            )
