"""The user's Python source files, parsed once, and the views every source rule reads.

No torch import: ``torchaudit lint`` reads source files without a model, and ``scan`` reads
the same views from its :class:`~torchaudit.analyzer.context.AuditContext`. A rule that reads
only what :class:`SourceView` offers runs in both (``rules/engine.py``, ``SOURCE_ALONE``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Protocol

from torchaudit.analyzer.paths import resolved

ClassKey = tuple[Path, str]  # (resolved file, class name)


@dataclass
class SourceFile:
    path: Path
    text: str
    tree: ast.Module

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()


def parse_source(path: Path, text: str) -> SourceFile:
    """``text`` (the contents of ``path``) parsed; ``SyntaxError`` or ``ValueError`` (a NUL byte)
    when it is not Python."""
    return SourceFile(path, text, ast.parse(text, filename=str(path)))


def class_defs(sources: Iterable[SourceFile]) -> dict[ClassKey, tuple[SourceFile, ast.ClassDef]]:
    """Class definitions by (resolved file, class name); the first one in ``ast.walk`` order
    where a file defines a name twice."""
    out: dict[ClassKey, tuple[SourceFile, ast.ClassDef]] = {}
    for src in sources:
        path = resolved(src.path)
        for node in ast.walk(src.tree):
            if isinstance(node, ast.ClassDef):
                out.setdefault((path, node.name), (src, node))
    return out


def calls_by_line(sources: Iterable[SourceFile]) -> dict[Path, dict[int, list[ast.Call]]]:
    """Call nodes of each file by the lines they start and end on."""
    out: dict[Path, dict[int, list[ast.Call]]] = {}
    for src in sources:
        by_line = out.setdefault(resolved(src.path), {})
        for n in ast.walk(src.tree):
            if isinstance(n, ast.Call):
                by_line.setdefault(n.lineno, []).append(n)
                if n.end_lineno and n.end_lineno != n.lineno:
                    by_line.setdefault(n.end_lineno, []).append(n)
    return out


class SourceView(Protocol):
    """What a rule that reads the source alone may look at. ``AuditContext`` (a scan: module
    paths come from the live model) and ``rules.source_model.SourceContext`` (``lint``: the
    ``nn.Module`` subclasses found in each file's AST, named by class) both offer it."""

    @property
    def sources(self) -> list[SourceFile]: ...

    @property
    def class_defs(self) -> dict[ClassKey, tuple[SourceFile, ast.ClassDef]]: ...

    @property
    def calls_by_line(self) -> dict[Path, dict[int, list[ast.Call]]]: ...

    @property
    def module_paths_by_class(self) -> dict[ClassKey, list[str]]:
        """The modules whose class is this one: module paths in a scan, the class's own name in lint."""
        ...

    @property
    def environment(self) -> dict[str, Any]: ...

    def source_for(self, file: str | Path) -> SourceFile | None: ...
