"""Which of the user's functions run when the model runs: the call graph from ``forward``.

Rules that care whether code runs at forward time (TA501 factories, TA506 NumPy, TA103
branches on ``self.training``, mode sensitivity) ask here instead of judging a method by its
name: a helper that only ``__init__`` calls is set-up code, one that ``forward`` calls (directly
or through another helper) is run-time code, and one that both call is run-time code too.

The walk starts at each module's ``forward`` and follows, in the user's sources:

- ``self.name`` (a call, or a reference such as ``checkpoint(self._block, x)``), resolved
  through the live module's class MRO, so a base class's method counts and an override wins;
- ``super().name``, resolved past the class that defines the calling method;
- ``self.child.name(...)``: a submodule's method, run by the caller with the submodule as ``self``;
- a plain name that is a function defined at the top level of the same file;
- functions nested in a function that runs (they are defined there to be called there).

A function is attributed to the module paths whose ``forward`` runs it, in ``named_modules``
order: a module-level helper and a submodule's method to the caller, as a traced graph
attributes the nodes they produce; :func:`runs_as_self` answers the other question, which
functions run with a given module as ``self``. The same walk from the set-up entry points
(``__init__``, ``reset_parameters``, ``_init_weights``, ...) gives set-up code. Calls it cannot
resolve (``getattr(self, name)()``, a method of an element of a ``ModuleList``) are not
followed; traced graph nodes are evidence of their own for that.

The modules come from a :class:`ModuleTree`: the live model in a scan; in ``torchaudit lint``,
with no model, every ``nn.Module`` subclass of the file stands for one module, named by its
class, and its bases and submodules are read from the source (``rules/source_model.py``).
"""

from __future__ import annotations

import ast
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Hashable, Mapping, Protocol, cast

from torchaudit.analyzer.paths import class_file
from torchaudit.rules import astutil

if TYPE_CHECKING:
    import torch.nn as nn

    from torchaudit.analyzer.context import AuditContext
    from torchaudit.analyzer.sources import SourceFile, SourceView

Function = ast.FunctionDef | ast.AsyncFunctionDef
FORWARD_ENTRIES = ("forward",)
SETUP_ENTRIES = ("__init__", "__setstate__", "reset_parameters", "_reset_parameters", "_init_weights", "init_weights")


class ModuleTree(Protocol):
    """The modules a call graph starts from, and how their methods resolve: the live model in a
    scan (:class:`LiveTree`), the ``nn.Module`` subclasses of a file in lint
    (``rules/source_model.py``, ``StaticTree``). A module is a handle of the tree's own kind."""

    @property
    def modules(self) -> Mapping[str, Hashable]:
        """Module paths (lint: class names) to their handles, in ``named_modules`` order."""
        ...

    def kind(self, module: Hashable) -> Hashable:
        """What method resolution depends on (a live module's class)."""
        ...

    def resolve(self, kind: Hashable, name: str, after: Hashable | None) -> tuple[SourceFile, Function, Hashable] | None:
        """The user's definition that ``module.name`` runs (``super().name`` past ``after``),
        with the kind that defines it; ``None`` when it is a library's or unknown."""
        ...

    def child(self, path: str, module: Hashable, attr: str) -> tuple[str, Hashable] | None:
        """The submodule ``self.<attr>`` of ``module`` (at ``path``), with its path."""
        ...


class LiveTree:
    """The live model's module tree (a scan): classes and submodules as Python sees them."""

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx
        self.modules: dict[str, nn.Module] = dict(ctx.model.named_modules())

    def kind(self, module: Hashable) -> Hashable:
        return type(module)

    def resolve(self, kind: Hashable, name: str, after: Hashable | None) -> tuple[SourceFile, Function, Hashable] | None:
        """The user's definition that ``cls().name`` (``super().name`` past ``after``) runs."""
        assert isinstance(kind, type)
        mro = kind.__mro__
        start = mro.index(after) + 1 if isinstance(after, type) and after in mro else 0
        for k in mro[start:]:
            if name not in vars(k):
                continue
            file = class_file(k)
            found = self.ctx.class_defs.get((file, k.__name__)) if file is not None else None
            if found is None:
                return None  # torch's or a library's: not the user's code
            src, cdef = found
            defs = [f for f in astutil.methods(cdef) if f.name == name]
            return (src, defs[-1], k) if defs else None
        return None

    def child(self, path: str, module: Hashable, attr: str) -> tuple[str, Hashable] | None:
        sub = cast("nn.Module", module)._modules.get(attr)
        return (f"{path}.{attr}" if path else attr, sub) if sub is not None else None


def module_tree(ctx: SourceView) -> ModuleTree:
    """The tree a context offers: the live model's, or (lint) the one read from the source."""
    from torchaudit.rules.source_model import SourceContext

    if isinstance(ctx, SourceContext):
        return ctx.tree
    return LiveTree(cast("AuditContext", ctx))  # every other context is a scan's


@dataclass(frozen=True)
class _Refs:
    """What a function's body (nested functions included) refers to."""

    self_attrs: frozenset[str]  # self.<name>
    super_attrs: frozenset[str]  # super().<name>
    child_attrs: frozenset[tuple[str, str]]  # self.<child>.<name>
    names: frozenset[str]  # plain names read
    nested: tuple[Function, ...]


@dataclass(frozen=True)
class _Visit:
    runner: str  # the module whose forward (or set-up) runs fn: what a finding is attributed to
    self_path: str | None  # the module that is ``self`` in fn (None in a module-level function)
    src: SourceFile
    fn: Function
    self_name: str | None  # the name ``self`` has in fn
    owner: Hashable | None  # the class that defines fn (for super()): a kind of the tree


@dataclass(frozen=True)
class _Reached:
    runners: dict[Function, list[str]]  # function -> module paths whose entry point runs it
    selves: dict[str, list[Function]]  # module path -> the functions that run with it as self


@dataclass
class CallGraph:
    forward: dict[Function, list[str]] = field(default_factory=dict)  # function -> paths whose forward runs it
    setup: set[Function] = field(default_factory=set)  # functions the set-up entry points run
    forward_selves: dict[str, list[Function]] = field(default_factory=dict)  # path -> functions forward runs as it

    def setup_only(self, fn: Function) -> bool:
        return fn in self.setup and fn not in self.forward


_GRAPHS: weakref.WeakKeyDictionary[SourceView, CallGraph] = weakref.WeakKeyDictionary()


def call_graph(ctx: SourceView) -> CallGraph:
    """The model's call graph, computed once per scan (per file in lint)."""
    graph = _GRAPHS.get(ctx)
    if graph is None:
        walker = _Walker(module_tree(ctx))
        forward = walker.walk(FORWARD_ENTRIES)
        order = {path: i for i, path in enumerate(walker.modules)}
        graph = CallGraph(
            {fn: sorted(paths, key=order.__getitem__) for fn, paths in forward.runners.items()},
            set(walker.walk(SETUP_ENTRIES).runners),
            forward.selves,
        )
        _GRAPHS[ctx] = graph
    return graph


def forward_paths(ctx: SourceView, src: SourceFile, node: ast.AST) -> list[str]:
    """Module paths whose ``forward`` runs the function holding ``node`` (a helper of the
    same file, or a submodule's method it calls, counts for the caller, as in a traced graph);
    empty when none does (set-up code, code nothing calls, or not part of this model)."""
    fn = astutil.enclosing_function(node, src)
    return list(call_graph(ctx).forward.get(fn, ())) if fn is not None else []


def setup_only(ctx: SourceView, src: SourceFile, node: ast.AST) -> bool:
    """Whether ``node`` is in code that only set-up (``__init__`` and friends) runs."""
    fn = astutil.enclosing_function(node, src)
    return fn is not None and call_graph(ctx).setup_only(fn)


def runs_as_self(ctx: SourceView, path: str) -> list[Function]:
    """The functions that some module's ``forward`` runs with module ``path`` as ``self``: its
    own ``forward`` and the methods it calls, and its methods a parent's ``forward`` calls."""
    return list(call_graph(ctx).forward_selves.get(path, ()))


class _Walker:
    def __init__(self, tree: ModuleTree) -> None:
        self.tree = tree
        self.modules = tree.modules
        self._methods: dict[tuple[Hashable, str, Hashable | None], tuple[SourceFile, Function, Hashable] | None] = {}
        self._refs: dict[tuple[Function, str | None], _Refs] = {}
        self._top: dict[int, dict[str, Function]] = {}

    def walk(self, entries: tuple[str, ...]) -> _Reached:
        reached = _Reached({}, {})
        stack = [v for path, m in self.modules.items() for name in entries if (v := self._method(path, path, m, name)) is not None]
        seen: set[tuple[Function, str, str | None]] = set()
        while stack:
            visit = stack.pop()
            if (visit.fn, visit.runner, visit.self_path) in seen:
                continue
            seen.add((visit.fn, visit.runner, visit.self_path))
            refs = self.refs(visit.fn, visit.self_name)
            for fn in (visit.fn, *refs.nested):
                runners = reached.runners.setdefault(fn, [])
                if visit.runner not in runners:
                    runners.append(visit.runner)
                if visit.self_path is not None:
                    selves = reached.selves.setdefault(visit.self_path, [])
                    if fn not in selves:
                        selves.append(fn)
            stack.extend(self._callees(visit, refs))
        return reached

    def _callees(self, visit: _Visit, refs: _Refs) -> list[_Visit]:
        out: list[_Visit | None] = []
        me = visit.self_path
        module = self.modules.get(me) if me is not None else None
        if me is not None and module is not None:
            out += [self._method(visit.runner, me, module, name) for name in refs.self_attrs]
            out += [self._method(visit.runner, me, module, name, after=visit.owner) for name in refs.super_attrs if visit.owner]
            for child, name in refs.child_attrs:
                sub = self.tree.child(me, module, child)
                if sub is not None:
                    out.append(self._method(visit.runner, sub[0], sub[1], name))
        top = self.top_level(visit.src)
        out += [_Visit(visit.runner, None, visit.src, top[name], None, None) for name in refs.names if name in top]
        return [v for v in out if v is not None]

    def _method(self, runner: str, path: str, module: Hashable, name: str, after: Hashable | None = None) -> _Visit | None:
        """``module.name`` (the module at ``path``) as run by ``runner``'s code, when it is the user's."""
        key = (self.tree.kind(module), name, after)
        if key not in self._methods:
            self._methods[key] = self.tree.resolve(key[0], name, after)
        found = self._methods[key]
        if found is None:
            return None
        src, fn, owner = found
        return _Visit(runner, path, src, fn, _self_name(fn), owner)

    def top_level(self, src: SourceFile) -> dict[str, Function]:
        """The functions defined at the top level of a file, by name (the last definition wins)."""
        if id(src) not in self._top:
            self._top[id(src)] = {f.name: f for f in src.tree.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
        return self._top[id(src)]

    def refs(self, fn: Function, self_name: str | None) -> _Refs:
        key = (fn, self_name)
        if key not in self._refs:
            self._refs[key] = _refs_of(fn, self_name)
        return self._refs[key]


def _self_name(fn: Function) -> str | None:
    if any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list):
        return None
    params = fn.args.posonlyargs + fn.args.args
    return params[0].arg if params else None


def _refs_of(fn: Function, self_name: str | None) -> _Refs:
    self_attrs: set[str] = set()
    super_attrs: set[str] = set()
    child_attrs: set[tuple[str, str]] = set()
    names: set[str] = set()
    nested: list[Function] = []
    for n in ast.walk(fn):
        if n is not fn and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested.append(n)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            names.add(n.id)
        elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load):
            base = n.value
            if self_name is not None and isinstance(base, ast.Name) and base.id == self_name:
                self_attrs.add(n.attr)
            elif isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super":
                super_attrs.add(n.attr)
            elif (self_name is not None and isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name)
                  and base.value.id == self_name):
                child_attrs.add((base.attr, n.attr))
    return _Refs(frozenset(self_attrs), frozenset(super_attrs), frozenset(child_attrs), frozenset(names), tuple(nested))
