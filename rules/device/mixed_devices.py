"""TA505: parameters or buffers on more than one device."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules.astutil import module_finding_args
from torchaudit.rules.dtype.common import own_tensors
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class MixedDevices(Rule):
    """
    What it finds:
        Modules whose own parameters or buffers are on another device than most of the
        model's tensors (counted by elements).

    Why it matters:
        Ops that combine tensors from two devices fail, or (for scalars) silently copy; a
        model moved in parts usually forgot a module added later or a tensor moved by hand.

    Example:
        `model.cuda()` then `model.head = nn.Linear(64, 10)` (CPU). A model moved as a whole is
        silent. Deliberate model parallelism also shows up here.

    Fix:
        Move the whole model once (`model.to(device)`) after building it; for deliberate model
        parallelism, ignore this rule.

    Fact:
        `Module.to` / `Module._apply` (torch/nn/modules/module.py) move only the module they are
        called on and its children.
    """

    code = "TA505"
    severity = Severity.WARNING
    title = "Tensors on more than one device"
    needs = frozenset({"devices"})  # --meta builds every tensor on the meta device: placement is unknown

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        counts: Counter[str] = Counter()
        for t in list(ctx.model.parameters()) + list(ctx.model.buffers()):
            counts[str(t.device)] += t.numel()
        if len(counts) < 2:
            return
        main = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        for path, m in ctx.model.named_modules():
            odd = sorted({str(t.device) for _, t in own_tensors(m)} - {main})
            if odd:
                yield self.finding(
                    f"{type(m).__name__} has tensors on {'/'.join(odd)} while most of the model is on {main}",
                    fix=f"move the whole model once with model.to({main!r}) after building it",
                    evidence={"devices": odd, "model_device": main},
                    **module_finding_args(ctx, path),
                )
