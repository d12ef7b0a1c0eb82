from __future__ import annotations

from torchaudit.report import ComparisonResult, Divergence, Severity
from torchaudit.rules.dynamic.base import DivergenceRule, where
from torchaudit.rules.engine import register


@register
class NondeterministicEval(DivergenceRule):
    """
    What it finds:
        Two eval-mode runs of the same configuration on the same inputs differ. The finding
        names the first node whose own output differs between the runs.

    Why it matters:
        An eval-mode model is expected to be a function of its inputs. A random op still
        active in eval (most often `F.dropout` without `training=self.training`) makes every
        prediction, metric and test of the model noisy.

    Example:
        `x = F.dropout(x, 0.3)` inside `forward`: the functional form does not follow
        `model.eval()`.

    Fix:
        Pass `training=self.training` to functional dropout (or use `nn.Dropout`), and keep
        random ops out of the eval path.

    Fact:
        `torch.nn.functional.dropout(input, p=0.5, training=True, inplace=False)`: `training`
        defaults to True (torch/nn/functional.py).
    """

    code = "TA702"
    severity = Severity.ERROR
    title = "Eval-mode runs of one configuration differ"
    comparison = "determinism"

    def message(self, result: ComparisonResult, d: Divergence, error: str) -> str:
        return f"two eval-mode runs ({result.candidate}) on the same inputs differ, first at {where(d)}: {error}"

    def fix_text(self, result: ComparisonResult, d: Divergence) -> str:
        return "make that op deterministic in eval mode, e.g. pass training=self.training to functional dropout"
