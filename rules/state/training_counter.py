"""TA207: a training-state counter kept in a plain Python attribute outside ``forward``."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Iterable

import torch
import torch.nn as nn

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil
from torchaudit.rules.engine import Rule, register
from torchaudit.rules.state.common import Write, forward_reads, self_writes

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext, SourceFile


def counts(w: Write) -> bool:
    """``self.n += 1`` or ``self.n = self.n + 1`` (``min(self.n + 1, k)``): a value that
    advances from its own previous value."""
    if w.how == "augassign":
        return True
    if w.how != "assign" or not isinstance(w.node, (ast.Assign, ast.AnnAssign)) or w.node.value is None:
        return False
    return any(astutil.is_self_attr(n, w.attr) and isinstance(n.ctx, ast.Load) for n in ast.walk(w.node.value))


@register
class TrainingStateCounter(Rule):
    """
    What it finds:
        A plain Python attribute that a method other than `forward` (and `__init__`) advances
        from its own value, `self.updates += 1` in an EMA's `update()` or `self.step += 1` in
        a warm-up schedule's `step()`, when `forward` does not read it (TA203 reports those).

    Why it matters:
        The counter drives training (the EMA decay ramp, the warm-up factor), but it is not in
        `state_dict()`: a model reloaded from a checkpoint, or training resumed from one,
        starts it again at its `__init__` value and repeats the ramp.

    Example:
        `self.updates += 1; d = self.decay * (1 - math.exp(-self.updates / 2000))` in
        `update()`. The silent look-alike keeps it in a buffer, as
        `torch.optim.swa_utils.AveragedModel` does with `n_averaged`.

    Fix:
        Register it as a buffer (`self.register_buffer("updates", torch.zeros((), dtype=torch.long))`)
        and advance it in place (`self.updates += 1` then works on the tensor), or save it
        through `get_extra_state`/`set_extra_state`.

    Fact:
        `Module._save_to_state_dict` (torch/nn/modules/module.py) writes parameters,
        persistent buffers and `get_extra_state()` only; `AveragedModel.__init__`
        (torch/optim/swa_utils.py) registers its `n_averaged` counter as a buffer for this reason.
    """

    code = "TA207"
    severity = Severity.WARNING
    title = "Training-state counter in a plain attribute"
    source_nodes = (ast.ClassDef,)

    def check_source(self, node: ast.AST, source: SourceFile, ctx: AuditContext) -> Iterable[Finding]:
        assert isinstance(node, ast.ClassDef)
        paths = astutil.instances(ctx, source, node)
        if not paths:
            return
        sample = ctx.model.get_submodule(paths[0])
        reads = forward_reads(node)  # a counter forward reads is TA203's
        seen: set[str] = set()
        for w in self_writes(node):
            if w.attr in seen or w.attr in reads or w.method == "forward" or not counts(w):
                continue
            if w.attr in sample._parameters or w.attr in sample._buffers or w.attr in sample._modules:
                continue
            value = getattr(sample, w.attr, None)
            if isinstance(value, (bool, nn.Module)) or not isinstance(value, (int, float, torch.Tensor)):
                continue  # flags, submodules, and values __init__ does not set
            seen.add(w.attr)
            start = f" at {value!r}" if isinstance(value, (int, float)) else ""
            module, extra = astutil.attribution(paths)
            yield self.finding(
                f"{node.name}.{w.method} advances self.{w.attr}, a plain Python attribute: state_dict() does not save it, "
                f"so a reloaded model or resumed training starts it again{start}" + astutil.instances_note(paths),
                fix=f"register {w.attr!r} as a buffer (register_buffer({w.attr!r}, torch.zeros((), dtype=torch.long))), "
                "or save it with get_extra_state/set_extra_state",
                module=module,
                location=astutil.location(source, w.node),
                evidence={"attribute": w.attr, "method": w.method, **extra},
            )
