"""TA502: a hard-coded CUDA device in the model's code."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext, SourceFile

FACTORIES = {"build_model", "get_model", "fresh_model"}


def _cuda_literal(expr: ast.AST | None) -> str | None:
    """The device string of a literal ``"cuda..."``, else ``None``."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str) and expr.value.split(":")[0] == "cuda":
        return expr.value
    return None


def _guarded(node: ast.AST, src: SourceFile) -> bool:
    """Inside an ``if``/conditional expression that asks ``torch.cuda.is_available()``."""
    for a in astutil.ancestors(node, src):
        if isinstance(a, (ast.If, ast.IfExp)) and any(
            (astutil.call_name(n, src) or "").endswith("cuda.is_available") for n in ast.walk(a.test)
        ):
            return True
    return False


def hardcoded(call: ast.Call, src: SourceFile) -> str | None:
    if isinstance(call.func, ast.Attribute) and call.func.attr == "cuda" and not (astutil.call_name(call, src) or "").startswith("torch."):
        return ".cuda()"
    first = _cuda_literal(call.args[0]) if call.args else None
    if isinstance(call.func, ast.Attribute) and call.func.attr == "to" and first:
        return f'.to("{first}")'
    if astutil.call_name(call, src) == "torch.device" and first:
        return f'torch.device("{first}")'
    dev = _cuda_literal(astutil.argument(call, "device"))
    if dev:
        return f'device="{dev}"'
    return None


@register
class HardcodedDevice(Rule):
    """
    What it finds:
        A hard-coded CUDA device in the model's code (its classes' methods and its
        `build_model`/`get_model` factory): `.cuda()`, `.to("cuda")`, `device="cuda:0"`,
        `torch.device("cuda")`, unless guarded by `torch.cuda.is_available()`.

    Why it matters:
        The model cannot be built or run on a CPU-only machine (tests, CI, export), and on a
        multi-GPU machine it pins tensors to one device regardless of where the model is.

    Example:
        `mask = torch.ones(n, device="cuda")` in `forward`. The silent look-alike follows the
        input: `device=x.device`.

    Fix:
        Take the device from an input or a parameter (`x.device`,
        `next(self.parameters()).device`) and let the caller move the model with `.to()`.

    Fact:
        `Module.to` (torch/nn/modules/module.py) moves parameters and buffers only; a device
        literal in code is not affected by it.
    """

    code = "TA502"
    severity = Severity.WARNING
    title = "Hard-coded CUDA device"

    def check_source(self, node: ast.AST, source: SourceFile, ctx: AuditContext) -> Iterable[Finding]:
        assert isinstance(node, ast.Call)
        what = hardcoded(node, source)
        if what is None or _guarded(node, source):
            return
        cls = astutil.enclosing_class(node, source)
        fn = astutil.enclosing_function(node, source)
        paths = astutil.instances(ctx, source, cls) if cls is not None else []
        if not paths and not (cls is None and fn is not None and fn.name in FACTORIES):
            return
        module, extra = astutil.attribution(paths) if paths else ("", {})
        yield self.finding(
            f"{what} hard-codes a CUDA device: the model cannot run on CPU-only machines or follow .to()"
            + astutil.instances_note(paths),
            fix="take the device from an input or parameter (x.device) and let the caller move the model with .to()",
            module=module,
            location=astutil.location(source, node),
            evidence={"code": what, **extra},
        )
