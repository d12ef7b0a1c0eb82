"""TA106: the model as built or loaded is in train mode and has mode-sensitive layers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity, display_path
from torchaudit.rules.astutil import module_finding_args
from torchaudit.rules.engine import Rule, register
from torchaudit.rules.mode.common import sensitive_modules

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class ModelInTrainMode(Rule):
    """
    What it finds:
        The model as the target builds it (or as a checkpoint loads it) is in train mode and
        contains mode-sensitive layers (dropout, BatchNorm with running statistics, ...). When
        the root is in eval mode but some mode-sensitive submodules were put back in train
        mode, each of those is reported.

    Why it matters:
        Inference in this state is stochastic (dropout) or batch-dependent and mutating
        (BatchNorm updates its running statistics on every call).

    Example:
        `def build_model(): return Classifier()`: a new module starts in train mode. The
        silent look-alike returns `Classifier().eval()`.

    Fix:
        Call `model.eval()` after building or loading the model for inference; the flag is not
        saved in a checkpoint. When torchaudit builds the model from a TARGET, declare the
        state it is served in where it is built: a `build_model()` factory in the model file
        that returns `Net().eval()` (torchaudit calls it instead of the class).

    Fact:
        `Module.__init__` sets `self.training = True` (torch/nn/modules/module.py), and
        `_save_to_state_dict` writes only parameters and persistent buffers, so a loaded
        model is in whatever mode its constructor left it.
    """

    code = "TA106"
    severity = Severity.WARNING
    title = "Model is in train mode"

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        active = [(p, why) for p, m, why in sensitive_modules(ctx) if m.training]
        if not active:
            return
        if ctx.model.training:
            shown = ", ".join(f"{p or '<root>'}: {why}" for p, why in active[:3])
            more = f" and {len(active) - 3} more" if len(active) > 3 else ""
            subject, fix = _built_by(ctx)
            yield self.finding(
                f"{subject} is in train mode with {len(active)} mode-sensitive layer{'s' if len(active) != 1 else ''} "
                f"({shown}{more}): inference in this state is stochastic or batch-dependent",
                fix=fix,
                module="",
                evidence={"layers": [p for p, _ in active]},
            )
            return
        for path, why in active:
            yield self.finding(
                f"{why} is in train mode inside an eval-mode model",
                fix="call .eval() on it too, unless train-mode behaviour at inference is deliberate",
                **module_finding_args(ctx, path),
            )


def _built_by(ctx: AuditContext) -> tuple[str, str]:
    """Who put the model in train mode, and how to declare the state it is served in: the
    user's own object (the Python API), a class torchaudit built itself, or the user's factory."""
    target = ctx.target
    if target is None:
        return "the model", "call model.eval() after building or loading the model for inference"
    built = getattr(target.module, target.name, None)
    if isinstance(built, type):
        factory = f"`def build_model(): return {target.name}().eval()`"
        if target.file is not None:
            how = f"add {factory} to {display_path(str(target.file))}; torchaudit builds the model with it instead of the class"
        else:  # package.module:NAME, perhaps a third-party class: the factory goes in a file of the user's
            how = f"scan a model file of yours with {factory} instead of {target.spec}"
        return f"{target.name}(), as torchaudit builds it from the target,", f"declare the state it is served in: {how}"
    return (
        f"the model {target.name}() returns",
        f"return it in the state it is served in from {target.name}() (e.g. `return model.eval()`), "
        "unless train mode is deliberate",
    )
