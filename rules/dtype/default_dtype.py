"""TA404: ``torch.set_default_dtype`` in the source."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.sources import SourceFile, SourceView


@register
class SetDefaultDtype(Rule):
    """
    What it finds:
        A call to `torch.set_default_dtype(...)` in the model's source.

    Why it matters:
        Factory functions (`torch.zeros`, `torch.tensor` of floats) and new parameters take
        the process-wide default dtype: the same model code builds different models depending
        on what ran before it, and the setting leaks into every other module of the process.

    Example:
        `torch.set_default_dtype(torch.float64)` at import time. Reading it with
        `torch.get_default_dtype()` is silent.

    Fix:
        Pass `dtype=` explicitly where a dtype matters, or cast the model once with
        `model.to(dtype)`; restore the default if you must change it.

    Fact:
        `torch.set_default_dtype` (torch/__init__.py) changes the dtype of floating tensors
        created without a dtype, process-wide.
    """

    code = "TA404"
    severity = Severity.INFO
    title = "Process-wide default dtype set in source"
    needs = frozenset({"source"})  # the Python source is enough: runs in lint too

    def check_source(self, node: ast.AST, source: SourceFile, ctx: SourceView) -> Iterable[Finding]:
        if astutil.call_name(node, source) != "torch.set_default_dtype":
            return
        module, extra = astutil.owner_attribution(ctx, source, node)
        yield self.finding(
            "torch.set_default_dtype changes the dtype of every tensor and parameter created afterwards, process-wide",
            fix="pass dtype= explicitly or cast the model with model.to(dtype) instead",
            module=module,
            location=astutil.location(source, node),
            evidence=extra,
        )
