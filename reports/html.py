"""The HTML report: one self-contained file (inline CSS, JS and SVG) for code review.

It loads nothing from the network, so it can be attached to a pull request or kept as a CI
artifact and still open years later. Every string from the model is escaped by jinja2's
autoescape; the page's sentences and numbers come from :mod:`torchaudit.reports.view`.
"""

from __future__ import annotations


import jinja2

from torchaudit.report import Report
from torchaudit.reports.view import page_view


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("torchaudit.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: Report) -> str:
    return _environment().get_template("report.html.j2").render(page=page_view(report))
