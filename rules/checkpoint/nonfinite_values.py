from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.analyzer.load.checkpoint_match import listing
from torchaudit.analyzer.load.stored_values import nonfinite
from torchaudit.report import Finding, Location, Severity
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class NonFiniteValues(Rule):
    """
    What it finds:
        Checkpoint tensors that contain NaN or Inf, with how many of each. Counts are of the
        values the file stores: each storage is read once, so a tensor expanded from one NaN
        (`torch.full((1,), nan).expand(2**30)`, stride 0) is 1 NaN of 1 stored value, and
        tensors that share a storage (tied weights) are one finding naming them all.
        Safetensors files are read one tensor at a time.

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
        `isfinite`); integer tensors are always finite. A view's elements are values of its
        storage at `storage_offset + sum(index * stride)` (`Tensor.as_strided`), so a stride-0
        dimension repeats values and never adds one.
    """

    code = "TA307"
    severity = Severity.ERROR
    title = "NaN or Inf values in the checkpoint"
    needs = frozenset({"checkpoint", "values"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        ckpt = ctx.checkpoint
        if ckpt is None or ckpt.tensors is None:
            return
        for block, nan, inf in nonfinite(ckpt.tensors):
            key, stored = block.keys[0], block.values.numel()
            also = f"; {listing(list(block.keys[1:]), 3)} views the same storage" if len(block.keys) > 1 else ""
            if stored == block.numel and not also:
                message = f"checkpoint tensor {key} holds {nan} NaN and {inf} Inf of {stored} values"
            else:  # a stride-0 or shared view: count what the file stores, not what the shape claims
                message = (f"checkpoint tensor {key} holds {nan} NaN and {inf} Inf of the {stored} value{'s' if stored != 1 else ''} "
                           f"stored for its {block.numel} elements{also}")
            yield self.finding(
                message,
                fix="use a checkpoint from before training diverged",
                module=key.rpartition(".")[0],
                location=Location(str(ckpt.path)),
                evidence={"key": key, "nan": nan, "inf": inf, "numel": block.numel, "stored": stored,
                          "keys": list(block.keys)},
            )

