"""TA308: ``load_state_dict(..., strict=False)`` whose returned keys are ignored."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.sources import SourceFile, SourceView


def _discarded(call: ast.Call, src: SourceFile) -> bool:
    parent = astutil.index(src).parents.get(call)
    if isinstance(parent, ast.Expr):
        return True
    if isinstance(parent, ast.Assign) and parent.value is call:
        names = [e for t in parent.targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
        return all(isinstance(n, ast.Name) and n.id == "_" for n in names)
    return False


@register
class IgnoredLoadStateDictKeys(Rule):
    """
    What it finds:
        A `load_state_dict(..., strict=False)` call whose result (the missing and unexpected
        keys) is thrown away.

    Why it matters:
        `strict=False` turns a checkpoint that does not fit into a silent partial load:
        layers whose keys are missing keep their random initial weights and nothing says so.

    Example:
        `model.load_state_dict(sd, strict=False)` as a statement. The silent look-alike keeps
        and checks the result: `result = model.load_state_dict(sd, strict=False)` then
        `assert not result.missing_keys`.

    Fix:
        Keep the result and fail (or at least log) when `missing_keys` or `unexpected_keys` is
        not empty, or load with `strict=True`.

    Fact:
        `Module.load_state_dict` (torch/nn/modules/module.py) returns
        `_IncompatibleKeys(missing_keys, unexpected_keys)` and raises only when `strict` is
        True.
    """

    code = "TA308"
    severity = Severity.WARNING
    title = "strict=False load ignores its missing keys"
    needs = frozenset({"source"})  # the Python source is enough: runs in lint too

    def check_source(self, node: ast.AST, source: SourceFile, ctx: SourceView) -> Iterable[Finding]:
        assert isinstance(node, ast.Call)
        if not (isinstance(node.func, ast.Attribute) and node.func.attr == "load_state_dict"):
            return
        if not astutil.is_constant(astutil.argument(node, "strict", 1), False) or not _discarded(node, source):
            return
        module, extra = astutil.owner_attribution(ctx, source, node)
        yield self.finding(
            "load_state_dict(..., strict=False) discards the missing and unexpected keys it returns: a partial load "
            "goes unnoticed",
            fix="keep the result and fail when result.missing_keys or result.unexpected_keys is not empty",
            module=module,
            location=astutil.location(source, node),
            evidence=extra,
        )
