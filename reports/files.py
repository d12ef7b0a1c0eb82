"""Write reports to files (or stdout): the formats, their file suffixes, and writing that never
throws a run away.

``write_reports`` renders every requested report first (a renderer that raises is a bug, and
then nothing is written), then writes each one, creating missing parent folders. A write that
still fails does not stop the others: every other report is written, and only then is one
:class:`ReportWriteError` raised that lists each failed flag and path (``.failures``), so the
command line can print its summary and exit 2 naming the path. ``Report.write`` calls
:func:`write_report` here, so every format has one renderer.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torchaudit.errors import OptionError
from torchaudit.report import Report

FORMATS = ("json", "html", "markdown", "sarif")
# file suffix -> format; the longest suffix that matches wins (".sarif.json" before ".json")
SUFFIXES = {
    ".sarif.json": "sarif",
    ".sarif": "sarif",
    ".json": "json",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
}
FLAGS = {"json": "--json", "html": "--html", "markdown": "--markdown", "sarif": "--sarif"}
STDOUT = "-"


@dataclass(frozen=True)
class WriteFailure:
    """One report that could not be written: its flag (``--html``), path and why."""

    flag: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.flag} {self.path}: cannot write the report ({self.reason})"


class ReportWriteError(OptionError):
    """Some reports could not be written; every other one was. ``failures`` lists the failed ones."""

    def __init__(self, failures: list[WriteFailure], written: list[str]) -> None:
        super().__init__("; ".join(str(f) for f in failures),
                         "pass a path in a folder that you can write to (missing folders are created)")
        self.failures = tuple(failures)
        self.written = tuple(written)


def _renderer(fmt: str) -> Callable[[Report], str]:
    if fmt == "json":
        from torchaudit.reports.json_report import render_json

        return lambda r: render_json(r) + "\n"
    if fmt == "html":
        from torchaudit.reports.html import render_html

        return render_html
    if fmt == "markdown":
        from torchaudit.reports.markdown import render_markdown

        return render_markdown
    if fmt == "sarif":
        from torchaudit.reports.sarif import render_sarif

        return lambda r: render_sarif(r) + "\n"
    raise OptionError(f"unknown report format {fmt!r}", f"pick one of {', '.join(FORMATS)}")


def render(report: Report, fmt: str) -> str:
    """The report as the text of one format (``json``, ``html``, ``markdown`` or ``sarif``)."""
    return _renderer(fmt)(report)


def format_for(path: str | Path, fmt: str | None = None) -> str:
    """The format to write ``path`` in: ``fmt`` when given, else the one its suffix names."""
    if fmt is not None:
        key = {"md": "markdown"}.get(fmt.lower(), fmt.lower())
        if key not in FORMATS:
            raise OptionError(f"unknown report format {fmt!r}", f"pick one of {', '.join(FORMATS)}")
        return key
    name = str(path).lower()
    if name == STDOUT:
        raise OptionError("'-' (stdout) has no suffix to tell the report format", f"pass format= one of {', '.join(FORMATS)}")
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    raise OptionError(
        f"{path}: cannot tell the report format from the file suffix",
        f"use one of {', '.join(SUFFIXES)} or pass format= one of {', '.join(FORMATS)}",
    )


def _write(path: str, text: str) -> None:
    if path == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def write_report(report: Report, path: str | Path, fmt: str | None = None) -> None:
    """Write one report to ``path`` (``-`` = stdout) in ``fmt`` or the format its suffix names."""
    fmt = format_for(path, fmt)
    write_reports(report, **{fmt: str(path)})


def write_reports(
    report: Report, *, json: str | None = None, html: str | None = None, markdown: str | None = None,
    sarif: str | None = None,
) -> list[str]:
    """Render every requested report, then write each one (``-`` = stdout); return the paths
    written. Raises :class:`ReportWriteError` after writing all the others when any write fails."""
    jobs = [(fmt, path) for fmt, path in (("json", json), ("html", html), ("markdown", markdown), ("sarif", sarif)) if path]
    texts = [(fmt, str(path), render(report, fmt)) for fmt, path in jobs]
    written: list[str] = []
    failures: list[WriteFailure] = []
    for fmt, path, text in texts:
        try:
            _write(path, text)
        except OSError as exc:
            failures.append(WriteFailure(FLAGS[fmt], path, exc.strerror or str(exc)))
        else:
            written.append(path)
    if failures:
        raise ReportWriteError(failures, written)
    return written
