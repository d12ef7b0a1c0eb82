"""TA405: TF32 or reduced float32 matmul precision."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.sources import SourceFile, SourceView

_FLAGS = ("backends.cuda.matmul.allow_tf32", "backends.cudnn.allow_tf32")


def _setting(node: ast.AST, src: SourceFile) -> str | None:
    """The TF32 setting a statement or call makes, or None."""
    if isinstance(node, ast.Assign):
        for t in node.targets:
            target = astutil.dotted(t, src) or ""
            if target.endswith(_FLAGS) and astutil.is_constant(node.value, True):
                return f"{target} = True"
            if target.endswith("fp32_precision") and astutil.is_constant(node.value, "tf32"):
                return f'{target} = "tf32"'
    if isinstance(node, ast.Call) and astutil.call_name(node, src) == "torch.set_float32_matmul_precision":
        arg = node.args[0] if node.args else astutil.argument(node, "precision")
        if isinstance(arg, ast.Constant) and arg.value in ("high", "medium"):
            return f'torch.set_float32_matmul_precision("{arg.value}")'
    return None


@register
class TF32Enabled(Rule):
    """
    What it finds:
        Source that enables TF32 (`torch.backends.cuda.matmul.allow_tf32 = True`,
        `torch.backends.cudnn.allow_tf32 = True`, `fp32_precision = "tf32"`,
        `torch.set_float32_matmul_precision("high"/"medium")`); without such a line, an
        environment where float32 matmuls use reduced precision, or, on a CUDA machine,
        cuDNN's TF32 (on by default).

    Why it matters:
        TF32 keeps 10 mantissa bits: CUDA float32 convolutions and matmuls then differ from
        CPU results by about 1e-3 relative, by design, and a CPU-vs-GPU comparison must allow
        for it.

    Example:
        `torch.backends.cuda.matmul.allow_tf32 = True` in the training script;
        `torch.set_float32_matmul_precision("highest")` is silent.

    Fix:
        Keep it if the speed is wanted and compare with TF32-sized tolerances; otherwise set
        `torch.backends.cudnn.allow_tf32 = False` and precision "highest".

    Fact:
        `torch.backends.cudnn.allow_tf32` defaults to True and
        `torch.backends.cuda.matmul.allow_tf32` to False (torch/backends/cuda/__init__.py,
        torch/backends/cudnn/__init__.py); `torch.set_float32_matmul_precision` documents
        "high" as TF32 (torch/__init__.py).
    """

    code = "TA405"
    severity = Severity.INFO
    title = "TF32 / reduced float32 precision"
    needs = frozenset({"source"})  # the Python source is enough: runs in lint too
    source_nodes = (ast.Assign, ast.Call)

    def check_source(self, node: ast.AST, source: SourceFile, ctx: SourceView) -> Iterable[Finding]:
        setting = _setting(node, source)
        if setting is None:
            return
        module, extra = astutil.owner_attribution(ctx, source, node)
        yield self.finding(
            f"{setting} makes CUDA float32 matmuls/convolutions use TF32: results differ from CPU by about 1e-3",
            fix="compare CPU and CUDA with TF32-sized tolerances, or keep float32 precision 'highest'",
            module=module,
            location=astutil.location(source, node),
            evidence={"setting": setting, **extra},
        )

    def check(self, ctx: SourceView) -> Iterable[Finding]:
        flags = ctx.environment.get("flags", {})
        on = []
        if flags.get("allow_tf32_matmul"):
            on.append("torch.backends.cuda.matmul.allow_tf32 is True")
        if flags.get("float32_matmul_precision", "highest") != "highest":
            on.append(f"float32 matmul precision is {flags['float32_matmul_precision']!r}")
        if flags.get("allow_tf32_cudnn") and ctx.environment.get("cuda_available"):
            on.append("torch.backends.cudnn.allow_tf32 is True (its default)")
        if on and not _source_sets_tf32(ctx):
            yield self.finding(
                "in this environment " + " and ".join(on) + ": CUDA float32 results differ from CPU by design",
                fix="compare CPU and CUDA with TF32-sized tolerances, or disable TF32 for exact comparisons",
                module=None,
                evidence={"flags": {k: flags.get(k) for k in ("allow_tf32_matmul", "allow_tf32_cudnn", "float32_matmul_precision")}},
            )


def _source_sets_tf32(ctx: SourceView) -> bool:
    return any(_setting(n, src) for src in ctx.sources for n in ast.walk(src.tree))
