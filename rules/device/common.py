"""Shared predicates of the TA5xx family: forward-time code and tensor factories."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from torchaudit.rules import astutil

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext, SourceFile

FACTORIES = {
    "zeros", "ones", "empty", "full", "arange", "range", "tensor", "rand", "randn", "randint",
    "randperm", "eye", "linspace", "logspace", "as_tensor", "scalar_tensor", "tril_indices", "triu_indices",
}
SETUP_METHODS = {"__init__", "reset_parameters", "_reset_parameters", "extra_repr", "__repr__", "train", "eval"}


def factory_name(target: str) -> str | None:
    """``torch.zeros`` / ``torch._VariableFunctionsClass.zeros`` -> ``zeros``; else None."""
    if not target.startswith("torch."):
        return None
    parts = target.split(".")
    if len(parts) == 2 or (len(parts) == 3 and parts[1] == "_VariableFunctionsClass"):
        return parts[-1] if parts[-1] in FACTORIES else None
    return None


def forward_owner(node: ast.AST, src: SourceFile, ctx: AuditContext) -> list[str]:
    """Module paths whose run-time code (a method other than ``__init__`` and friends) holds
    ``node``; empty when it is set-up code or not part of this model."""
    owner = astutil.method_of(node, src)
    if owner is None or owner[1].name in SETUP_METHODS:
        return []
    return astutil.instances(ctx, src, owner[0])
