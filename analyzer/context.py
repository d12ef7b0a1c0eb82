"""What the stages hand the rules: the model, its graph, inputs, sources, checkpoint, environment
and the dynamic stage's results, in one frozen :class:`AuditContext`.

The pipeline (``analyzer/pipeline.py``) builds it once per scan. Rules read its fields; views
that several rules derive from it (the model's dtype, the user's source files parsed, source
classes and calls by line, the checkpoint aligned with the model) are ``cached_property``s,
computed on first use. Nothing else is written into it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from torchaudit.analyzer.dtypes import model_dtype
from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.load.target import LoadedTarget
from torchaudit.analyzer.paths import class_file, resolved
from torchaudit.analyzer.sources import ClassKey, SourceFile, calls_by_line, class_defs, parse_source
from torchaudit.analyzer.trace.graph import ModelGraph
from torchaudit.report import ComparisonResult

if TYPE_CHECKING:
    from torchaudit.analyzer.compare.stage import ComparisonFailure
    from torchaudit.analyzer.load.checkpoint import Checkpoint, TensorEntry
    from torchaudit.analyzer.load.checkpoint_match import Alignment


@dataclass(frozen=True, eq=False)
class AuditContext:
    """Everything a rule may look at. Frozen: rules read it, never write it."""

    model: nn.Module  # the user's model, or a copy with --checkpoint loaded: read it, never run it in place
    target: LoadedTarget | None
    inputs: ExampleInputs | None
    graph: ModelGraph | None
    environment: dict[str, Any]
    trace_failures: tuple[str, ...] = ()  # why each tracer failed, when none could trace the model
    checkpoint: Checkpoint | None = None  # --checkpoint: what the file holds and how it loaded
    meta: bool = False  # built on the meta device: no tensor values, every tensor on one device
    comparisons: tuple[ComparisonResult, ...] | None = None  # None: the dynamic stage did not run
    comparison_failures: tuple[ComparisonFailure, ...] = ()  # comparisons that did not give a result

    @cached_property
    def model_dtype(self) -> torch.dtype:
        """The model's dtype, as every rule and comparison defines it (``analyzer/dtypes.py``)."""
        return model_dtype(self.model, self.inputs)

    @cached_property
    def sources(self) -> list[SourceFile]:
        """The user's model source files, parsed once (files that do not parse are skipped)."""
        files: list[SourceFile] = []
        paths = self.target.source_files if self.target is not None else _files_of(self.model)
        for path in paths:
            try:
                files.append(parse_source(path, path.read_text(encoding="utf-8")))
            except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                continue
        return files

    def source_for(self, file: str | Path) -> SourceFile | None:
        """The parsed source file at ``file``, when it is one of the user's."""
        return self._sources_by_path.get(resolved(Path(file)))

    @cached_property
    def _sources_by_path(self) -> dict[Path, SourceFile]:
        return {resolved(s.path): s for s in self.sources}

    @cached_property
    def class_defs(self) -> dict[ClassKey, tuple[SourceFile, ast.ClassDef]]:
        """Class definitions of the user's sources (``analyzer/sources.py``, ``class_defs``)."""
        return class_defs(self.sources)

    @cached_property
    def module_paths_by_class(self) -> dict[ClassKey, list[str]]:
        """Module paths of the model by (resolved file of their class, class name), in
        ``named_modules`` order."""
        out: dict[tuple[Path, str], list[str]] = {}
        for path, m in self.model.named_modules():
            file = class_file(type(m))
            if file is not None:
                out.setdefault((file, type(m).__name__), []).append(path)
        return out

    @cached_property
    def calls_by_line(self) -> dict[Path, dict[int, list[ast.Call]]]:
        """Call nodes of each user source file by the lines they start and end on."""
        return calls_by_line(self.sources)

    @cached_property
    def checkpoint_alignment(self) -> tuple[Checkpoint, Alignment, dict[str, TensorEntry]] | None:
        """``(checkpoint, alignment, model entries)``, or ``None`` without a checkpoint whose
        structure is known (one that was not unpickled)."""
        from torchaudit.analyzer.load.checkpoint_match import align, model_entries

        ckpt = self.checkpoint
        if ckpt is None or ckpt.entries is None:
            return None
        entries = model_entries(self.model)
        return ckpt, align(entries, ckpt.entries), entries


def _files_of(model: nn.Module) -> list[Path]:
    """Source files of the classes a live model is made of: the user's own code, not torch's
    and not installed packages' (findings in transformers' source are nothing a user can fix)."""
    import sysconfig

    installed = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib", "stdlib")}
    seen: dict[Path, None] = {}
    for cls in dict.fromkeys(type(m) for m in model.modules()):
        path = class_file(cls)
        if path is None:
            continue
        if any(root in path.parents for root in installed) or "site-packages" in path.parts:
            continue
        seen.setdefault(path, None)
    return list(seen)
