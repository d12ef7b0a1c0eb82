"""TA504: ``cudnn.benchmark = True`` in the source."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.sources import SourceFile, SourceView


@register
class CudnnBenchmark(Rule):
    """
    What it finds:
        An assignment `torch.backends.cudnn.benchmark = True` in the source.

    Why it matters:
        cuDNN then times several convolution algorithms on the first call of each shape and
        keeps the fastest; the choice can change from run to run and machine to machine, and
        different algorithms round differently, so results are not reproducible.

    Example:
        `torch.backends.cudnn.benchmark = True`; setting it to `False` is silent.

    Fix:
        Leave it off where reproducibility matters (evaluation, tests), or set
        `torch.backends.cudnn.deterministic = True` alongside.

    Fact:
        `torch.backends.cudnn.benchmark` defaults to False (torch/backends/cudnn/__init__.py);
        the reproducibility notes (docs/source/notes/randomness.rst) say benchmarking selects
        algorithms nondeterministically.
    """

    code = "TA504"
    severity = Severity.INFO
    title = "cuDNN benchmark mode enabled"
    needs = frozenset({"source"})  # the Python source is enough: runs in lint too
    source_nodes = (ast.Assign,)

    def check_source(self, node: ast.AST, source: SourceFile, ctx: SourceView) -> Iterable[Finding]:
        assert isinstance(node, ast.Assign)
        if not astutil.is_constant(node.value, True):
            return
        if not any((astutil.dotted(t, source) or "").endswith("cudnn.benchmark") for t in node.targets):
            return
        module, extra = astutil.owner_attribution(ctx, source, node)
        yield self.finding(
            "cudnn.benchmark = True lets cuDNN pick convolution algorithms by timing: results can change from run to run",
            fix="leave cudnn.benchmark off where results must be reproducible, or also set cudnn.deterministic = True",
            module=module,
            location=astutil.location(source, node),
            evidence=extra,
        )
