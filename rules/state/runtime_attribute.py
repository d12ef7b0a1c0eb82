"""TA203: a Python attribute assigned outside ``__init__`` and read by ``forward``."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Iterable

import torch.nn as nn

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil
from torchaudit.rules.engine import Rule, register
from torchaudit.rules.state.common import forward_reads, self_writes

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext, SourceFile


@register
class RuntimePythonAttribute(Rule):
    """
    What it finds:
        An attribute that a module's method other than `__init__` assigns (`self.calls += 1`
        in `forward`, `self.temperature = t` in a setter) and that `forward` reads, which is
        not a parameter, buffer or submodule.

    Why it matters:
        It is state that changes what `forward` computes, but it is not part of `state_dict()`:
        a counter, temperature or threshold set during training is back at its `__init__`
        value in the reloaded model.

    Example:
        `self.calls += 1` and `if self.calls > 100:` in `forward`. The silent look-alike sets
        `self.scale_factor = 2.0` only in `__init__`.

    Fix:
        Keep it in a registered buffer (`self.register_buffer("calls", torch.zeros((), dtype=torch.long))`),
        or save it through `get_extra_state`/`set_extra_state`.

    Fact:
        `Module._save_to_state_dict` (torch/nn/modules/module.py) writes parameters,
        persistent buffers and `get_extra_state()` only; plain attributes are not saved.
    """

    code = "TA203"
    severity = Severity.WARNING
    title = "Python attribute changed outside __init__"
    source_nodes = (ast.ClassDef,)

    def check_source(self, node: ast.AST, source: SourceFile, ctx: AuditContext) -> Iterable[Finding]:
        assert isinstance(node, ast.ClassDef)
        paths = astutil.instances(ctx, source, node)
        if not paths:
            return
        sample = ctx.model.get_submodule(paths[0])
        reads = forward_reads(node)
        seen: set[str] = set()
        for w in self_writes(node):
            if w.attr in seen or w.attr not in reads or w.attr == "training":
                continue
            if w.attr in sample._parameters or w.attr in sample._buffers or w.attr in sample._modules:
                continue
            if isinstance(getattr(sample, w.attr, None), nn.Module):
                continue
            seen.add(w.attr)
            module, extra = astutil.attribution(paths)
            yield self.finding(
                f"{node.name}.{w.method} assigns self.{w.attr}, which forward reads, but it is a plain Python attribute: "
                "state_dict() does not save it" + astutil.instances_note(paths),
                fix=f"keep {w.attr!r} in a registered buffer, or save it with get_extra_state/set_extra_state",
                module=module,
                location=astutil.location(source, w.node),
                evidence={"attribute": w.attr, **extra},
            )
