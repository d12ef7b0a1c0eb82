"""Write the HTML, Markdown and SARIF reports that the command line asks for."""

from __future__ import annotations

from pathlib import Path

from torchaudit.errors import OptionError
from torchaudit.report import Report


def write_reports(report: Report, *, html: str | None = None, markdown: str | None = None, sarif: str | None = None) -> None:
    """Render every requested report first, then write them (a failed write names the flag)."""
    from torchaudit.reports.html import render_html
    from torchaudit.reports.markdown import render_markdown
    from torchaudit.reports.sarif import render_sarif

    jobs = [(flag, path, render) for flag, path, render in (
        ("--html", html, render_html),
        ("--markdown", markdown, render_markdown),
        ("--sarif", sarif, lambda r: render_sarif(r) + "\n"),
    ) if path]
    texts = [(flag, path, render(report)) for flag, path, render in jobs]
    for flag, path, text in texts:
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise OptionError(f"{flag} {path}: cannot write the report ({exc.strerror or exc})",
                              "pass a path in a folder that exists and that you can write to") from exc
