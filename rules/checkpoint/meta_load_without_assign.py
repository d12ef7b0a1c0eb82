"""TA309: loading a state dict into a meta-device model without ``assign=True``."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.sources import SourceFile, SourceView

_META_CONTEXTS = {"torch.device", "accelerate.init_empty_weights", "init_empty_weights"}


def _is_meta(expr: ast.AST | None) -> bool:
    return astutil.is_constant(expr, "meta") or (
        isinstance(expr, ast.Call) and any(astutil.is_constant(a, "meta") for a in expr.args)
    )


def _meta_context(with_node: ast.With, src: SourceFile) -> bool:
    for item in with_node.items:
        call = item.context_expr
        name = astutil.call_name(call, src)
        if name == "torch.device" and isinstance(call, ast.Call) and _is_meta(call.args[0] if call.args else None):
            return True
        if name and name.endswith("init_empty_weights"):
            return True
    return False


def _meta_value(value: ast.AST) -> bool:
    """``Net(device="meta")``, ``Net().to("meta")``, ``torch.nn.utils.skip_init``-free forms."""
    for n in ast.walk(value):
        if isinstance(n, ast.Call):
            if _is_meta(astutil.argument(n, "device")):
                return True
            if isinstance(n.func, ast.Attribute) and n.func.attr == "to" and n.args and _is_meta(n.args[0]):
                return True
    return False


def _meta_lines(scope: ast.AST, name: str, src: SourceFile) -> tuple[list[int], list[int]]:
    """Lines where ``name`` is bound to a meta-device model, and lines that materialize it."""
    meta: list[int] = []
    real: list[int] = []
    for n in astutil.walk_body(scope) if not isinstance(scope, ast.Module) else ast.walk(scope):
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in n.targets):
            in_meta = any(isinstance(a, ast.With) and _meta_context(a, src) for a in astutil.ancestors(n, src))
            (meta if in_meta or _meta_value(n.value) else real).append(n.lineno)
        elif (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr == "to_empty"
            and isinstance(n.func.value, ast.Name)
            and n.func.value.id == name
        ):
            real.append(n.lineno)
    return meta, real


@register
class MetaLoadWithoutAssign(Rule):
    """
    What it finds:
        `model.load_state_dict(sd)` without `assign=True` on a model that the same function
        built on the `meta` device (`with torch.device("meta"):`, `device="meta"`,
        `.to("meta")`, accelerate's `init_empty_weights()`), with no `to_empty()` in between.

    Why it matters:
        Copying into a meta tensor is a no-op: the model keeps no weights at all, and the
        first real forward fails or (after `to_empty`) computes with uninitialized memory.

    Example:
        `with torch.device("meta"): model = Net()` then `model.load_state_dict(sd)`. The
        silent look-alike passes `assign=True`.

    Fix:
        Pass `assign=True` so the checkpoint's tensors replace the meta ones.

    Fact:
        `Module._load_from_state_dict` (torch/nn/modules/module.py) only warns "copying from a
        non-meta parameter in the checkpoint to a meta parameter in the current model, which
        is a no-op" when `assign` is False.
    """

    code = "TA309"
    severity = Severity.ERROR
    title = "Meta-device model loaded without assign=True"
    needs = frozenset({"source"})  # the Python source is enough: runs in lint too

    def check_source(self, node: ast.AST, source: SourceFile, ctx: SourceView) -> Iterable[Finding]:
        assert isinstance(node, ast.Call)
        func = node.func
        if not (isinstance(func, ast.Attribute) and func.attr == "load_state_dict" and isinstance(func.value, ast.Name)):
            return
        assign = astutil.argument(node, "assign", 2)
        if assign is not None and not astutil.is_constant(assign, False):
            return
        scope: ast.AST = astutil.enclosing_function(node, source) or source.tree
        meta, real = _meta_lines(scope, func.value.id, source)
        before = [m for m in meta if m < node.lineno]
        if not before or any(max(before) < r < node.lineno for r in real):
            return
        module, extra = astutil.owner_attribution(ctx, source, node)
        yield self.finding(
            f"{func.value.id} was built on the meta device (line {max(before)}) and load_state_dict without assign=True "
            "copies into meta tensors, which does nothing",
            fix="pass assign=True to load_state_dict so the checkpoint's tensors replace the meta ones",
            module=module,
            location=astutil.location(source, node),
            evidence={"meta_line": max(before), **extra},
        )
