"""Shared predicates of the TA1xx family: mode-sensitive layers (functional dropout calls,
which lint reads without torch, are in ``functional.py``)."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Iterable

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd
from torch.nn.modules.instancenorm import _InstanceNorm
from torch.nn.modules.rnn import RNNBase

from torchaudit.rules import astutil, callgraph

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


def reads_training(functions: Iterable[ast.FunctionDef | ast.AsyncFunctionDef]) -> bool:
    """Whether any of ``functions`` reads ``self.training``."""
    for fn in functions:
        for n in astutil.walk_body(fn):
            if astutil.is_self_attr(n, "training") and isinstance(n.ctx, ast.Load):
                return True
    return False


def sensitivity(module: nn.Module, ctx: AuditContext | None = None, path: str | None = None) -> str | None:
    """Why a module behaves differently in train and eval mode, or None. With ``ctx`` and the
    module's ``path``, a module of the user's whose forward code reads ``self.training`` too
    (followed from ``forward``: a ``train()`` override or a set-up helper does not count)."""
    if isinstance(module, _DropoutNd):
        return f"{type(module).__name__}(p={module.p})" if module.p > 0 else None
    if isinstance(module, _BatchNorm):
        return f"{type(module).__name__} (running statistics)" if module.track_running_stats else None
    if isinstance(module, _InstanceNorm):
        return f"{type(module).__name__} (running statistics)" if module.track_running_stats else None
    if isinstance(module, RNNBase):
        return f"{type(module).__name__}(dropout={module.dropout})" if module.dropout > 0 and module.num_layers > 1 else None
    if isinstance(module, nn.MultiheadAttention):
        return f"MultiheadAttention(dropout={module.dropout})" if module.dropout > 0 else None
    if ctx is not None and path is not None and reads_training(callgraph.runs_as_self(ctx, path)):
        return f"{type(module).__name__} (its code reads self.training)"
    return None


def sensitive_modules(ctx: AuditContext) -> list[tuple[str, nn.Module, str]]:
    """``(path, module, why)`` of every mode-sensitive module, in ``named_modules`` order."""
    out = []
    for path, m in ctx.model.named_modules():
        why = sensitivity(m, ctx, path)
        if why:
            out.append((path, m, why))
    return out
