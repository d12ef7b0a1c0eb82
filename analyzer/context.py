"""What the stages share: the model, its graph, inputs, sources, checkpoint and environment."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch.nn as nn

from torchaudit.analyzer.trace.graph import ModelGraph
from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.load.target import LoadedTarget

if TYPE_CHECKING:
    from torchaudit.analyzer.load.checkpoint import Checkpoint


@dataclass
class SourceFile:
    path: Path
    text: str
    tree: ast.Module

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines()


@dataclass
class AuditContext:
    """Everything a rule or a comparison may look at. Nothing here may be mutated."""

    model: nn.Module  # the user's model: read it, never run it in place
    target: LoadedTarget | None
    inputs: ExampleInputs | None
    graph: ModelGraph | None
    environment: dict[str, Any]
    trace_failures: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    # --checkpoint: what the file holds; when it loaded with strict=True, ``model`` is a copy
    # of the user's model with it loaded (the user's object is never changed)
    checkpoint: Checkpoint | None = None

    @cached_property
    def sources(self) -> list[SourceFile]:
        """The user's model source files, parsed once (files that do not parse are skipped)."""
        files: list[SourceFile] = []
        paths = self.target.source_files if self.target is not None else _files_of(self.model)
        for path in paths:
            try:
                text = path.read_text(encoding="utf-8")
                files.append(SourceFile(path, text, ast.parse(text, filename=str(path))))
            except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                continue
        return files


def _files_of(model: nn.Module) -> list[Path]:
    """Source files of the classes a live model is made of: the user's own code, not torch's
    and not installed packages' (findings in transformers' source are nothing a user can fix)."""
    import inspect
    import sysconfig

    installed = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib", "stdlib")}
    seen: dict[Path, None] = {}
    for cls in dict.fromkeys(type(m) for m in model.modules()):
        try:
            path = Path(inspect.getfile(cls)).resolve()
        except (TypeError, OSError):
            continue
        if any(root in path.parents for root in installed) or "site-packages" in path.parts:
            continue
        seen.setdefault(path, None)
    return list(seen)
