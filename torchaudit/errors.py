"""User-facing errors.

Every problem the user can fix (a bad target, bad inputs, a bad checkpoint, a bad option)
is raised as a :class:`TorchAuditError`: a short message saying what is wrong and a fix
saying what to do. The CLI prints ``message`` and ``fix`` on one line and exits with
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class TorchAuditError(Exception):
    """A problem with what the user gave us, not a bug in torchaudit."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def one_line(self) -> str:
        """Message and fix on one printable line: a message may quote a file's own strings
        (a key, a member name) carrying terminal escapes, or megabytes of them."""
        from torchaudit.report import printable

        text = self.message.rstrip(".")
        if self.fix:
            text += f". {self.fix.rstrip('.')}"
        return printable(text.replace("\n", " ")) + "."


class TargetError(TorchAuditError):
    """The model target could not be found, imported or constructed."""


class InputError(TorchAuditError):
    """The example inputs could not be built, or the model's forward failed on them."""


class CheckpointError(TorchAuditError):
    """The checkpoint file is missing, unreadable or not a checkpoint."""


class OptionError(TorchAuditError):
    """A command-line option or configuration value is invalid."""


def exception_line(exc: BaseException, limit: int | None = None) -> str:
    """``"TypeError: first line of the message"`` (cut to ``limit`` characters, if given): how a
    failure inside a tracer, a rule or a comparison is summarized in findings and reasons."""
    lines = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return line if limit is None or len(line) <= limit else line[: limit - 3] + "..."
