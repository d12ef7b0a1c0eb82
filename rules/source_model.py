"""A model read from one source file, for ``torchaudit lint``: no torch import, no model built.

Every ``nn.Module`` subclass the file defines stands for one module, named by its class
(``Net``), so the source rules ask the same questions they ask in a scan (which class's code
is this, does ``forward`` run it) and get answers from the AST alone:

- a class is an ``nn.Module`` subclass when a base is a ``torch.nn`` class (through the file's
  imports: ``nn.Module``, ``torch.nn.Sequential``, ``from torch.nn import Module``), a known
  module base of a library (``LightningModule``, ``PreTrainedModel``, ``ModelMixin``), or a
  module class of the same file; a class that defines ``forward`` and derives from an imported
  class (``class Block(layers.Base)``) counts too, since its base cannot be read here;
- a method resolves through the bases defined in the same file, left to right, depth first;
- ``self.<name> = Cls(...)`` (in any method of the class or its bases in the file) makes
  ``self.<name>`` a submodule of class ``Cls`` when ``Cls`` is a module class of the file.

What cannot be read from one file (a base class imported from another, ``ModuleList``
elements) is not followed; ``scan`` follows the live model instead.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Hashable, Iterator

from torchaudit.analyzer.paths import resolved
from torchaudit.analyzer.sources import ClassKey, SourceFile, calls_by_line, class_defs
from torchaudit.rules import astutil

Function = ast.FunctionDef | ast.AsyncFunctionDef

# torch.nn names that are classes but not modules (tensors and their placeholders)
_NOT_MODULES = {"Parameter", "UninitializedParameter", "Buffer", "UninitializedBuffer", "UninitializedTensorMixin"}
# module base classes of libraries, by the last part of their name
_LIBRARY_MODULES = {"LightningModule", "PreTrainedModel", "ModelMixin", "ScriptModule"}


def _is_library_module(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    if name.startswith("torch.nn.") and last[:1].isupper():
        return last not in _NOT_MODULES
    return last in _LIBRARY_MODULES or last.endswith("PreTrainedModel")


class _FileClasses:
    """The classes of one file, their bases in the file, and which are ``nn.Module`` subclasses."""

    def __init__(self, src: SourceFile) -> None:
        self.src = src
        self.by_name: dict[str, ast.ClassDef] = {}
        for node in ast.walk(src.tree):
            if isinstance(node, ast.ClassDef):
                self.by_name.setdefault(node.name, node)
        self._module: dict[str, bool] = {}

    def local_base(self, base: ast.expr) -> ast.ClassDef | None:
        return self.by_name.get(base.id) if isinstance(base, ast.Name) else None

    def is_module(self, cls: ast.ClassDef, seen: frozenset[str] = frozenset()) -> bool:
        if cls.name not in self._module:
            self._module[cls.name] = self._decide(cls, seen | {cls.name})
        return self._module[cls.name]

    def _decide(self, cls: ast.ClassDef, seen: frozenset[str]) -> bool:
        imported = False
        for base in cls.bases:
            local = self.local_base(base)
            if local is not None and local is not cls:
                if local.name not in seen and self.is_module(local, seen):
                    return True
                continue
            name = astutil.dotted(base, self.src)
            if name is None:
                continue
            if _is_library_module(name):
                return True
            head = base
            while isinstance(head, ast.Attribute):
                head = head.value
            imported = imported or (isinstance(head, ast.Name) and head.id in astutil.index(self.src).aliases)
        return imported and any(f.name == "forward" for f in astutil.methods(cls))

    def mro(self, cls: ast.ClassDef) -> list[ast.ClassDef]:
        """``cls`` and its bases defined in this file, left to right, depth first, each once."""
        out: list[ast.ClassDef] = []

        def visit(c: ast.ClassDef) -> None:
            if c in out:
                return
            out.append(c)
            for base in c.bases:
                local = self.local_base(base)
                if local is not None:
                    visit(local)

        visit(cls)
        return out


class StaticTree:
    """The callgraph's :class:`~torchaudit.rules.callgraph.ModuleTree` read from one file: each
    module class is a module named by its class; a handle is the class's ``ClassDef``."""

    def __init__(self, src: SourceFile) -> None:
        self.src = src
        self.classes = _FileClasses(src)
        self.modules: dict[str, Hashable] = {}
        for name, cls in self.classes.by_name.items():
            if self.classes.is_module(cls):
                self.modules[name] = cls

    def kind(self, module: Hashable) -> Hashable:
        return module

    def resolve(self, kind: Hashable, name: str, after: Hashable | None) -> tuple[SourceFile, Function, Hashable] | None:
        assert isinstance(kind, ast.ClassDef)
        mro = self.classes.mro(kind)
        start = mro.index(after) + 1 if isinstance(after, ast.ClassDef) and after in mro else 0
        for k in mro[start:]:
            defs = [f for f in astutil.methods(k) if f.name == name]
            if defs:
                return self.src, defs[-1], k
        return None

    def child(self, path: str, module: Hashable, attr: str) -> tuple[str, Hashable] | None:
        assert isinstance(module, ast.ClassDef)
        for k in self.classes.mro(module):
            for cls in self._assigned(k, attr):
                if cls.name in self.modules:
                    return cls.name, cls
        return None

    def _assigned(self, cls: ast.ClassDef, attr: str) -> Iterator[ast.ClassDef]:
        """Classes of this file that ``cls``'s methods assign to ``self.<attr>`` (``self.block = Block()``)."""
        for fn in astutil.methods(cls):
            for n in astutil.walk_body(fn):
                if (
                    isinstance(n, ast.Assign)
                    and isinstance(n.value, ast.Call)
                    and any(astutil.is_self_attr(t, attr) for t in n.targets)
                ):
                    local = self.classes.local_base(n.value.func)
                    if local is not None:
                        yield local


@dataclass(eq=False)
class SourceContext:
    """What the rules see in ``torchaudit lint``: one parsed file, no model, no graph. It offers
    :class:`~torchaudit.analyzer.sources.SourceView`, so a rule that reads only that (its
    ``needs`` is ``{"source"}``) runs here as it does in a scan."""

    source: SourceFile
    environment: dict[str, Any] = field(default_factory=dict)  # lint reads no environment
    model: None = None  # no model: the engine walks no module tree
    graph: None = None  # no graph: the engine walks no graph nodes

    @cached_property
    def sources(self) -> list[SourceFile]:
        return [self.source]

    def source_for(self, file: str | Path) -> SourceFile | None:
        return self.source if resolved(Path(file)) == self._path else None

    @cached_property
    def _path(self) -> Path:
        return resolved(self.source.path)

    @cached_property
    def class_defs(self) -> dict[ClassKey, tuple[SourceFile, ast.ClassDef]]:
        return class_defs(self.sources)

    @cached_property
    def calls_by_line(self) -> dict[Path, dict[int, list[ast.Call]]]:
        return calls_by_line(self.sources)

    @cached_property
    def tree(self) -> StaticTree:
        return StaticTree(self.source)

    @cached_property
    def module_paths_by_class(self) -> dict[ClassKey, list[str]]:
        """Each module class of the file stands for one module, named by the class."""
        return {(self._path, name): [name] for name in self.tree.modules}
