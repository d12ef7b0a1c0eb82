"""TA401: parameters and buffers of more than one floating dtype."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch

from torchaudit.report import Finding, Severity
from torchaudit.rules.astutil import module_finding_args
from torchaudit.rules.dtype.common import name, own_tensors
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    import torch.nn as nn

    from torchaudit.analyzer.context import AuditContext


@register
class MixedFloatDtypes(Rule):
    """
    What it finds:
        Modules whose own floating parameters or buffers have a dtype other than the model's
        (the dtype its example inputs reach it in; without inputs, its first floating
        parameter's). float64 tensors in a float32 model are TA403's.

    Why it matters:
        Mixed dtypes mean implicit casts or errors at every boundary, and a checkpoint saved
        from one part loads with a cast into the other (`load_state_dict` copies into the
        model's dtype). Usually a partial `.half()` or a layer added after casting.

    Example:
        `model.half()` followed by `model.head = nn.Linear(64, 10)` (float32). A model cast as a
        whole is silent.

    Fix:
        Cast the whole model once after building it (`model.to(dtype)`), or use autocast for
        mixed precision instead of mixed parameter dtypes.

    Fact:
        `Module._apply` (torch/nn/modules/module.py), used by `.to()`/`.half()`, casts only the
        module it is called on and its children.
    """

    code = "TA401"
    severity = Severity.WARNING
    title = "More than one floating dtype in the model"

    def check_module(self, path: str, module: nn.Module, ctx: AuditContext) -> Iterable[Finding]:
        main = ctx.model_dtype
        odd = sorted(
            {
                name(t.dtype)
                for _, t in own_tensors(module)
                if t.is_floating_point() and t.dtype != main and not (t.dtype == torch.float64 and main == torch.float32)
            }
        )
        if odd:
            yield self.finding(
                f"{type(module).__name__} holds {'/'.join(odd)} tensors in a {name(main)} model",
                fix=f"cast the whole model once (model.to(torch.{name(main)})), or use autocast for mixed precision",
                evidence={"dtypes": odd, "model_dtype": name(main)},
                **module_finding_args(ctx, path),
            )
