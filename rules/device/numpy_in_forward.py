"""TA506: NumPy called at run time inside the model."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil, callgraph
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.sources import SourceFile, SourceView


@register
class NumpyInForward(Rule):
    """
    What it finds:
        A NumPy call (`np.*`, `numpy.*`) or a `.numpy()` conversion in `forward` or in code it
        calls (followed from `forward`, rules/callgraph.py; a helper only `__init__` calls is
        set-up code).

    Why it matters:
        The values leave autograd (no gradients flow through), leave the device (a CUDA
        tensor must be copied to the CPU, a sync point), default to float64, and stop
        `torch.fx`/`torch.export` tracing.

    Example:
        `w = np.exp(-np.arange(n))` in `forward`. The same NumPy call in `__init__`, used to
        build a registered buffer, is silent.

    Fix:
        Use the torch equivalent (`torch.exp`, `torch.arange(..., device=x.device)`), or
        precompute the array once in `__init__` and register it as a buffer.

    Fact:
        `Tensor.numpy` (torch/_tensor.py) requires a CPU tensor that does not require grad;
        NumPy's default floating dtype is float64.
    """

    code = "TA506"
    severity = Severity.INFO
    title = "NumPy in forward"
    needs = frozenset({"source"})  # the Python source is enough: runs in lint too

    def check_source(self, node: ast.AST, source: SourceFile, ctx: SourceView) -> Iterable[Finding]:
        assert isinstance(node, ast.Call)
        name = astutil.call_name(node, source) or ""
        is_np = name.startswith("numpy.")
        is_conv = isinstance(node.func, ast.Attribute) and node.func.attr == "numpy" and not node.args
        if not (is_np or is_conv):
            return
        paths = callgraph.forward_paths(ctx, source, node)
        if not paths:
            return
        module, extra = astutil.attribution(paths)
        what = ".numpy()" if is_conv else name.replace("numpy.", "np.", 1)
        yield self.finding(
            f"{what} runs inside the model's forward: it leaves autograd and the device and stops tracing"
            + astutil.instances_note(paths),
            fix="use the torch equivalent, or precompute it in __init__ and register it as a buffer",
            module=module,
            location=astutil.location(source, node),
            evidence={"call": what, **extra},
        )
