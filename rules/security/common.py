"""Shared predicates of the TA6xx source rules: ``torch.load`` calls and their ``weights_only``."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from torchaudit.rules import astutil

if TYPE_CHECKING:
    from torchaudit.analyzer.context import SourceFile

LOADERS = {"torch.load", "torch.serialization.load"}


def is_torch_load(node: ast.AST, src: SourceFile) -> bool:
    return isinstance(node, ast.Call) and astutil.call_name(node, src) in LOADERS


def weights_only(call: ast.Call) -> str:
    """"true", "false", "missing", or "expr"/"unknown" when it cannot be read from the source."""
    expr = astutil.argument(call, "weights_only")
    if expr is None:
        return "unknown" if astutil.has_star_kwargs(call) else "missing"
    if astutil.is_constant(expr, True):
        return "true"
    if astutil.is_constant(expr, False):
        return "false"
    return "expr"


def unsafe_fallback(call: ast.Call, src: SourceFile) -> ast.Call | None:
    """For ``torch.load(..., weights_only=False)`` inside an ``except`` handler whose ``try``
    body loads with ``weights_only`` true (or left at its default), the safe call it replaces."""
    if weights_only(call) != "false":
        return None
    parents = astutil.index(src).parents
    for node in astutil.ancestors(call, src):
        trynode = parents.get(node)
        if isinstance(node, ast.ExceptHandler) and isinstance(trynode, ast.Try):
            for stmt in trynode.body:
                for n in ast.walk(stmt):
                    if isinstance(n, ast.Call) and is_torch_load(n, src) and weights_only(n) in ("true", "missing"):
                        return n
    return None
