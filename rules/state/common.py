"""Shared predicates of the TA2xx family: what a class's methods write to ``self``."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Iterator

from torchaudit.rules import astutil

INIT_METHODS = {"__init__", "__setstate__", "reset_parameters", "_reset_parameters", "extra_repr"}


@dataclass(frozen=True)
class Write:
    attr: str
    method: str
    node: ast.stmt | ast.expr  # the assignment or the in-place call
    how: str  # "assign", "augassign", "item", "inplace"


def self_writes(cls: ast.ClassDef) -> Iterator[Write]:
    """Writes to ``self.<attr>`` in methods other than ``__init__`` and friends, in source order."""
    found: list[Write] = []
    for fn in astutil.methods(cls):
        if fn.name in INIT_METHODS:
            continue
        for n in astutil.walk_body(fn):
            if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                for t in targets:
                    for elt in t.elts if isinstance(t, ast.Tuple) else [t]:
                        if astutil.is_self_attr(elt):
                            found.append(Write(elt.attr, fn.name, n, "augassign" if isinstance(n, ast.AugAssign) else "assign"))
                        elif isinstance(elt, ast.Subscript) and astutil.is_self_attr(elt.value):
                            found.append(Write(elt.value.attr, fn.name, n, "item"))
            elif (
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and n.func.attr.endswith("_")
                and not n.func.attr.startswith("_")
                and astutil.is_self_attr(n.func.value)
            ):
                found.append(Write(n.func.value.attr, fn.name, n, "inplace"))
    yield from sorted(found, key=lambda w: (w.node.lineno, w.node.col_offset))


def forward_reads(cls: ast.ClassDef) -> set[str]:
    """Attributes ``forward`` reads as ``self.<attr>`` (an augmented assignment reads too)."""
    out: set[str] = set()
    for fn in astutil.methods(cls):
        if fn.name != "forward":
            continue
        for n in astutil.walk_body(fn):
            if astutil.is_self_attr(n) and isinstance(n.ctx, ast.Load):
                out.add(n.attr)
            elif isinstance(n, ast.AugAssign) and astutil.is_self_attr(n.target):
                out.add(n.target.attr)
    return out
