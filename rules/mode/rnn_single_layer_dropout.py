"""TA109: RNN dropout with a single layer does nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torch.nn.modules.rnn import RNNBase

from torchaudit.report import Finding, Severity
from torchaudit.rules.astutil import module_finding_args
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    import torch.nn as nn

    from torchaudit.analyzer.context import AuditContext


@register
class SingleLayerRNNDropout(Rule):
    """
    What it finds:
        An `nn.RNN`, `nn.LSTM` or `nn.GRU` with `dropout > 0` and `num_layers=1`.

    Why it matters:
        The dropout is applied between stacked layers only, so with one layer it never runs:
        the model is not regularized the way its configuration says.

    Example:
        `nn.LSTM(32, 64, dropout=0.3)`; `nn.LSTM(32, 64, num_layers=2, dropout=0.3)` is silent.

    Fix:
        Use `num_layers >= 2`, or apply an `nn.Dropout` to the RNN's output instead.

    Fact:
        `RNNBase.__init__` (torch/nn/modules/rnn.py) warns: "dropout option adds dropout after
        all but last recurrent layer, so non-zero dropout expects num_layers greater than 1".
    """

    code = "TA109"
    severity = Severity.INFO
    title = "RNN dropout with a single layer"

    def check_module(self, path: str, module: nn.Module, ctx: AuditContext) -> Iterable[Finding]:
        if isinstance(module, RNNBase) and module.dropout > 0 and module.num_layers == 1:
            yield self.finding(
                f"{type(module).__name__} has dropout={module.dropout} but num_layers=1: dropout only runs between layers, "
                "so it never applies",
                fix="use num_layers >= 2, or apply nn.Dropout to the RNN's output",
                **module_finding_args(ctx, path),
            )
