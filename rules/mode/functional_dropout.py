"""TA101: a functional dropout left at its default ``training=True``."""

from __future__ import annotations

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil, sites
from torchaudit.rules.engine import register
from torchaudit.rules.mode.functional import FunctionalTrainingRule


@register
class FunctionalDropoutDefault(FunctionalTrainingRule):
    """
    What it finds:
        `F.dropout`, `F.dropout1d`, `F.dropout2d` or `F.dropout3d` called inside a module
        without a `training=` argument (or with one that was still true when the model was
        traced in eval mode), or a dropout module built and called in `forward`
        (`nn.Dropout(0.1)(x)`): the dropout stays on after `model.eval()`. The finding names
        the call as written.

    Why it matters:
        Every inference call randomly zeroes activations: outputs change from call to call,
        and accuracy measured in eval mode is not the model's accuracy.

    Example:
        `x = F.dropout(x, 0.1)` in `forward`. The silent look-alike is
        `F.dropout(x, 0.1, training=self.training)`, or an `nn.Dropout` module.

    Fix:
        Pass `training=self.training`, or use an `nn.Dropout` submodule, which follows
        `train()`/`eval()`. For deliberate Monte-Carlo dropout add
        `# torchaudit: ignore[TA101,TA702]` on the line (TA702 is the determinism comparison
        confirming that eval-mode runs differ there).

    Fact:
        `torch.nn.functional.dropout(input, p=0.5, training=True, inplace=False)` and
        `dropout1d/2d/3d` default `training` to True (torch/nn/functional.py); a module built
        in `forward` has `training=True` from `Module.__init__` and is no child of the model,
        so `Module.train(False)` (torch/nn/modules/module.py) never reaches it. Note that
        `alpha_dropout` and `feature_alpha_dropout` default it to False, so they are off
        without the argument and this rule does not flag them.
    """

    code = "TA101"
    severity = Severity.ERROR
    title = "Functional dropout is always on"
    needs = frozenset({"source"})  # the Python source is enough: runs in lint too

    kinds = frozenset({"missing", "expr", "module"})

    def report(self, site: sites.Site) -> Finding:
        call, kind = site.data["call"], site.data["kind"]
        module, extra = astutil.attribution(site.modules)
        if kind == "module":
            cls = call.partition("(")[0]
            message = (f"{call} builds a new {cls} in forward: a module built there starts in training mode and "
                       "model.eval() never reaches it, so the dropout stays on")
            fix = f"build the {cls} once in __init__ (self.dropout = {cls}(...)) and call that submodule in forward"
        else:
            how = "is called without training=self.training" if kind == "missing" else "ran with training=True in the eval-mode trace"
            message = f"{call} {how}, so it stays on after model.eval()"
            fix = f"pass training=self.training to {call}, or use an nn.Dropout submodule"
        return self.finding(
            message + astutil.instances_note(site.modules),
            fix=fix,
            module=module,
            node=site.node,
            location=site.location,
            evidence={"function": site.data["name"], "target": site.data["target"], "call": call, **extra},
        )
