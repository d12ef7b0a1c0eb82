"""TA102: a functional dropout or batch_norm with a literal ``training=True``."""

from __future__ import annotations

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil, sites
from torchaudit.rules.engine import register
from torchaudit.rules.mode.functional import FunctionalTrainingRule


@register
class LiteralTrainingTrue(FunctionalTrainingRule):
    """
    What it finds:
        A functional dropout (`F.dropout`, `dropout1d/2d/3d`, `alpha_dropout`,
        `feature_alpha_dropout`) or `F.batch_norm` called with a literal `training=True`.

    Why it matters:
        The literal ignores `self.training`: dropout stays random and batch_norm keeps using
        (and updating) batch statistics after `model.eval()`.

    Example:
        `F.dropout(x, 0.2, training=True)`; the silent look-alike passes
        `training=self.training`.

    Fix:
        Pass `training=self.training`. If the literal is deliberate (Monte-Carlo dropout at
        inference), keep it and add `# torchaudit: ignore[TA102,TA702]` on the line (TA702 is the determinism comparison confirming it).

    Fact:
        The functional forms take `training` as a plain argument and never read the module's
        flag (`torch.nn.functional.dropout` and `batch_norm` in torch/nn/functional.py);
        `Module.eval()` only sets `self.training` (torch/nn/modules/module.py, `Module.train`).
    """

    code = "TA102"
    severity = Severity.ERROR
    title = "Literal training=True in a functional call"
    needs = frozenset({"source"})  # the Python source is enough: runs in lint too

    kinds = frozenset({"true"})

    def report(self, site: sites.Site) -> Finding:
        name = site.data["call"]
        module, extra = astutil.attribution(site.modules)
        return self.finding(
            f"{name} is called with a literal training=True, so it ignores model.eval()"
            + astutil.instances_note(site.modules),
            fix=f"pass training=self.training to {name} (or add '# torchaudit: ignore[TA102,TA702]' for deliberate MC-dropout)",
            module=module,
            node=site.node,
            location=site.location,
            evidence={"function": site.data["name"], "target": site.data["target"], "call": name, **extra},
        )
