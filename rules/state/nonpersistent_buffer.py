"""TA202: a non-persistent buffer that forward writes to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil
from torchaudit.rules.engine import Rule, register
from torchaudit.rules.state.common import self_writes

if TYPE_CHECKING:
    import torch.nn as nn

    from torchaudit.analyzer.context import AuditContext


@register
class MutatedNonPersistentBuffer(Rule):
    """
    What it finds:
        A buffer registered with `persistent=False` that the module's own code writes to
        outside `__init__` (assignment, item assignment or an in-place method such as
        `copy_`, `add_`, `mul_`).

    Why it matters:
        The written value is state the model learned or accumulated, but a non-persistent
        buffer is not in `state_dict()`: a reloaded model starts again from its initial value.

    Example:
        `self.register_buffer("calls", torch.zeros(()), persistent=False)` and
        `self.calls.add_(1)` in `forward`. The silent look-alike only reads its
        non-persistent buffer (a constant causal mask).

    Fix:
        Register it as persistent (drop `persistent=False`) if its value matters after
        reloading; otherwise recompute it instead of mutating it.

    Fact:
        `Module._save_to_state_dict` (torch/nn/modules/module.py) skips buffers in
        `self._non_persistent_buffers_set`.
    """

    code = "TA202"
    severity = Severity.WARNING
    title = "Non-persistent buffer written at run time"

    def check_module(self, path: str, module: nn.Module, ctx: AuditContext) -> Iterable[Finding]:
        names = set(getattr(module, "_non_persistent_buffers_set", ()))
        if not names:
            return
        found = astutil.class_source(ctx, module)
        if found is None:
            return
        src, cls = found
        seen: set[str] = set()
        for w in self_writes(cls):
            if w.attr in names and w.attr not in seen:
                seen.add(w.attr)
                yield self.finding(
                    f"{type(module).__name__}.{w.method} writes to buffer {w.attr!r}, which is registered with "
                    "persistent=False: state_dict() does not save the value it accumulates",
                    fix=f'register {w.attr!r} without persistent=False so state_dict() saves it, or stop mutating it',
                    module=path,
                    location=astutil.location(src, w.node),
                    evidence={"buffer": f"{path}.{w.attr}" if path else w.attr},
                )
