"""Paths of source files, compared the same way everywhere (no torch import: lint uses it too)."""

from __future__ import annotations

import inspect
from pathlib import Path


def resolved(path: Path) -> Path:
    """``path`` resolved, or as it is when it cannot be (a vanished file)."""
    try:
        return path.resolve()
    except OSError:
        return path


def class_file(cls: type) -> Path | None:
    """The resolved file that defines ``cls`` (``None`` for builtins and generated classes)."""
    try:
        return resolved(Path(inspect.getfile(cls)))
    except (TypeError, OSError):
        return None
