from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Location, Severity
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class PickledModule(Rule):
    """
    What it finds:
        A checkpoint that is a whole pickled `nn.Module` (`torch.save(model)`), found from the
        module classes its pickle imports (read from the opcodes, not by unpickling).

    Why it matters:
        Loading it needs `torch.load(weights_only=False)`, which runs whatever the pickle
        says, and it breaks as soon as the class's source or import path changes: the
        checkpoint is tied to one version of the code.

    Example:
        `torch.save(model, "model.pt")` in the training script; `torch.load("model.pt")`
        fails under torch >= 2.6 with "Weights only load failed".

    Fix:
        Save `model.state_dict()` (ideally with safetensors) and build the model from code
        before loading it. torchaudit loads such a file only with `--trust-checkpoint`.

    Fact:
        `torch.load` defaults to `weights_only=True` since torch 2.6 (torch/serialization.py,
        `load`); the weights-only unpickler allows no `nn.Module` class
        (torch/_weights_only_unpickler.py, `_get_allowed_globals`).
    """

    code = "TA310"
    severity = Severity.WARNING
    title = "The checkpoint is a whole pickled module"
    needs = frozenset({"checkpoint"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        ckpt = ctx.checkpoint
        if ckpt is None or not ckpt.is_pickled_module:
            return
        classes = list(ckpt.module_classes)
        shown = ", ".join(classes[:4]) + (f" and {len(classes) - 4} more" if len(classes) > 4 else "")
        if ckpt.trusted:
            what = "it was unpickled with weights_only=False because of --trust-checkpoint"
        else:
            what = "it was not unpickled; --trust-checkpoint loads it with weights_only=False"
        yield self.finding(
            f"the checkpoint is a whole pickled module ({shown or 'an nn.Module'}): {what}",
            fix="save model.state_dict() (ideally with safetensors) and load it into a model built from code",
            module="",
            location=Location(str(ckpt.path)),
            evidence={"classes": classes, "unpickled": ckpt.loaded, "trusted": ckpt.trusted},
        )
