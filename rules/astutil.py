"""Shared source predicates for every family: import aliases, qualified call names,
enclosing scopes, and the model's module paths that instantiate a class of the source.

Rules call these; none of them walks a tree the engine already walks, except the small
per-scope look-ups (a class's methods, a function's body) that a predicate needs.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Iterator, TypedDict, TypeGuard

from torchaudit.analyzer.paths import class_file, resolved
from torchaudit.report import Location

if TYPE_CHECKING:
    import torch.nn as nn

    from torchaudit.analyzer.context import AuditContext
    from torchaudit.analyzer.sources import SourceFile, SourceView


@dataclass
class SourceIndex:
    parents: dict[ast.AST, ast.AST] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # local name -> dotted import path


_INDEX: dict[int, tuple[SourceFile, SourceIndex]] = {}


def release(src: SourceFile) -> None:
    """Forget a file's index (lint, after each file: the index holds the file's whole tree)."""
    _INDEX.pop(id(src), None)


def index(src: SourceFile) -> SourceIndex:
    """Parents and import aliases of a parsed file, computed once per file."""
    hit = _INDEX.get(id(src))
    if hit is not None and hit[0] is src:
        return hit[1]
    idx = SourceIndex()
    for parent in ast.walk(src.tree):
        for child in ast.iter_child_nodes(parent):
            idx.parents[child] = parent
        if isinstance(parent, ast.Import):
            for a in parent.names:
                idx.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(parent, ast.ImportFrom) and parent.module and not parent.level:
            for a in parent.names:
                idx.aliases[a.asname or a.name] = f"{parent.module}.{a.name}"
    _INDEX[id(src)] = (src, idx)
    return idx


def dotted(expr: ast.AST, src: SourceFile) -> str | None:
    """``F.dropout`` -> ``torch.nn.functional.dropout`` (through the file's imports)."""
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    head = index(src).aliases.get(expr.id, expr.id)
    return ".".join([head, *reversed(parts)])


def call_name(call: ast.AST, src: SourceFile) -> str | None:
    return dotted(call.func, src) if isinstance(call, ast.Call) else None


def argument(call: ast.Call, name: str, position: int | None = None) -> ast.expr | None:
    """The expression passed for parameter ``name`` (keyword, or positional at ``position``)."""
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    if position is not None and len(call.args) > position and not any(isinstance(a, ast.Starred) for a in call.args):
        return call.args[position]
    return None


def has_star_kwargs(call: ast.Call) -> bool:
    return any(kw.arg is None for kw in call.keywords)


def is_constant(expr: ast.AST | None, value: object) -> bool:
    return isinstance(expr, ast.Constant) and type(expr.value) is type(value) and expr.value == value


def is_self_attr(expr: ast.AST, attr: str | None = None) -> TypeGuard[ast.Attribute]:
    """``self.<attr>`` (any attribute when ``attr`` is None)."""
    return (
        isinstance(expr, ast.Attribute)
        and isinstance(expr.value, ast.Name)
        and expr.value.id == "self"
        and (attr is None or expr.attr == attr)
    )


def ancestors(node: ast.AST, src: SourceFile) -> Iterator[ast.AST]:
    parents = index(src).parents
    while node in parents:
        node = parents[node]
        yield node


def enclosing_function(node: ast.AST, src: SourceFile) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    for a in ancestors(node, src):
        if isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return a
    return None


def enclosing_class(node: ast.AST, src: SourceFile) -> ast.ClassDef | None:
    for a in ancestors(node, src):
        if isinstance(a, ast.ClassDef):
            return a
    return None


def method_of(node: ast.AST, src: SourceFile) -> tuple[ast.ClassDef, ast.FunctionDef | ast.AsyncFunctionDef] | None:
    """The (class, method) whose body holds ``node``, for a method defined directly in a class."""
    fn = enclosing_function(node, src)
    if fn is None:
        return None
    parent = index(src).parents.get(fn)
    return (parent, fn) if isinstance(parent, ast.ClassDef) else None


def methods(cls: ast.ClassDef) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def walk_body(fn: ast.AST) -> Iterator[ast.AST]:
    """Nodes of a function body, not descending into nested functions or classes."""
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        n = stack.pop()
        yield n
        if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(n))


def class_method(node: ast.AST, src: SourceFile) -> tuple[ast.ClassDef, ast.FunctionDef | ast.AsyncFunctionDef] | None:
    """The (class, method) whose body holds ``node``, also from inside a function nested in the
    method (``method_of`` answers for the method's own body only)."""
    fn: ast.FunctionDef | ast.AsyncFunctionDef | None = None
    for a in ancestors(node, src):
        if isinstance(a, ast.ClassDef):
            return (a, fn) if fn is not None else None
        if isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef)):
            fn = a
    return None


def instances(ctx: SourceView, src: SourceFile, cls: ast.ClassDef) -> list[str]:
    """Module paths of the model whose class is ``cls`` of this file, in named_modules order
    (lint: the class's own name when it is an ``nn.Module`` subclass, ``rules/source_model.py``)."""
    return list(ctx.module_paths_by_class.get((resolved(src.path), cls.name), ()))


def class_source(ctx: AuditContext, module: nn.Module) -> tuple[SourceFile, ast.ClassDef] | None:
    """The parsed class definition of a live module's class, when it is in the user's sources."""
    file = class_file(type(module))
    return ctx.class_defs.get((file, type(module).__name__)) if file is not None else None


def location(src: SourceFile, node: ast.AST) -> Location:
    return Location(str(src.path), getattr(node, "lineno", None), getattr(node, "col_offset", -1) + 1 or None)


def calls_at(ctx: SourceView, loc: Location | None) -> Iterable[tuple[SourceFile, ast.Call]]:
    """Call nodes of the user's sources that sit on a graph node's source line."""
    if loc is None or loc.line is None:
        return []
    src = ctx.source_for(loc.file)
    if src is None:
        return []
    return [(src, c) for c in ctx.calls_by_line.get(resolved(src.path), {}).get(loc.line, [])]


def attribution(paths: list[str]) -> tuple[str | None, dict[str, list[str]]]:
    """A finding's module (the first instance) and, for a shared class, every instance."""
    if not paths:
        return None, {}
    return paths[0], ({"modules": paths} if len(paths) > 1 else {})


def instances_note(paths: list[str]) -> str:
    return f" (and {len(paths) - 1} more instance{'s' if len(paths) > 2 else ''})" if len(paths) > 1 else ""


def construction_site(ctx: AuditContext, path: str) -> Location | None:
    """Where the parent's class assigns the submodule ``path`` (``self.bn = nn.BatchNorm1d(8)``)."""
    if not path:
        return None
    parent_path, _, attr = path.rpartition(".")
    return attribute_site(ctx, parent_path, attr)


def attribute_site(ctx: AuditContext, owner: str, attr: str) -> Location | None:
    """Where the class of module ``owner`` assigns ``self.<attr>`` (``__init__`` first)."""
    try:
        parent = ctx.model.get_submodule(owner)
    except AttributeError:
        return None
    found = class_source(ctx, parent)
    if found is None:
        return None
    src, cls = found
    for fn in sorted(methods(cls), key=lambda f: f.name != "__init__"):
        for n in walk_body(fn):
            if isinstance(n, (ast.Assign, ast.AnnAssign)):
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                if any(is_self_attr(t, attr) for t in targets):
                    return location(src, n)
            elif (
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and n.func.attr in ("register_buffer", "register_parameter", "register_module", "add_module")
                and n.args
                and is_constant(n.args[0], attr)
            ):
                return location(src, n)
    return None


class ModuleFindingArgs(TypedDict):
    """Keyword arguments of :meth:`Rule.finding` for a finding about one module."""

    module: str
    location: Location | None


def module_finding_args(ctx: AuditContext, path: str) -> ModuleFindingArgs:
    """``module`` and ``location`` keyword arguments for a finding about one module."""
    return {"module": path, "location": construction_site(ctx, path)}


def owner_attribution(ctx: SourceView, src: SourceFile, node: ast.AST) -> tuple[str | None, dict[str, list[str]]]:
    """Module attribution for a source finding: the instances of the enclosing class, if any."""
    cls = enclosing_class(node, src)
    return attribution(instances(ctx, src, cls) if cls is not None else [])
