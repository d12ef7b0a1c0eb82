"""torchaudit: why does my loaded (or deployed, or GPU, or half-precision) model give
different results than the one I trained?

The public API is imported lazily so that ``torchaudit --version`` never imports torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "scan", "diff", "check_checkpoint", "lint", "compare", "assert_consistent"]


def __getattr__(name: str) -> Any:  # the lazily imported function (scan, diff, check_checkpoint, lint, compare, assert_consistent)
    if name == "scan":
        from torchaudit.api import scan

        return scan
    if name == "diff":
        from torchaudit.diffing import diff

        return diff
    if name == "check_checkpoint":
        from torchaudit.checkpoint_check import check_checkpoint

        return check_checkpoint
    if name == "lint":  # imports no torch
        from torchaudit.lint import lint

        return lint
    if name in ("compare", "assert_consistent"):
        from torchaudit import consistency

        return getattr(consistency, name)
    raise AttributeError(f"module 'torchaudit' has no attribute {name!r}")
