"""The HTML report in a real headless Chromium: it renders, runs no foreign script, errs nowhere."""

from __future__ import annotations

import dataclasses

import pytest

from tests.browser import open_report, why_no_browser
from tests.conftest import FIXTURES, invoke_cli
from tests.report_samples import mlp_report
from torchaudit.report import Finding, Location, Severity
from torchaudit.reports.graph_view import graph_view_of
from torchaudit.reports.html import render_html

pytestmark = [
    pytest.mark.slow,  # starts a real Chromium per test
    pytest.mark.skipif(why_no_browser() is not None, reason=f"no headless browser: {why_no_browser()}"),
]

SECTIONS = ["verdict", "findings", "comparisons", "graph", "scanned", "environment"]  # what was scanned and the environment last, collapsed
SCRIPT = "<script>window['__pwned']=1</script>"
TITLE_SCRIPT = "<script>document['title']='pwned'</script>"


def test_report_renders_in_chromium(tmp_path):
    report = mlp_report()
    crash = Finding("TA902", Severity.WARNING, "A rule raised an exception", "rule TA205 raised KeyError",
                    module="bn", fix="report it")
    page = tmp_path / "report.html"
    page.write_text(render_html(dataclasses.replace(report, findings=report.findings + [crash])))
    shot = tmp_path / "report.png"
    result = open_report(page, tmp_path, screenshot=shot)
    facts = result.facts
    assert result.console_errors == []
    assert result.requests == [page.resolve().as_uri()]  # nothing but the file itself is loaded
    assert facts["sections"] == SECTIONS and facts["visible"]
    assert facts["title"].startswith("torchaudit: ") and facts["title"].endswith("examples/mlp_bn_dropout.py")
    assert facts["findings"] == 4 and facts["cards"] == 2 and facts["charts"] == 4
    assert facts["boxes"] == len(graph_view_of(report).groups)
    # every finding's rule has docs; none open at first, the button expands them all
    assert facts["docsOpen"] == 0 and facts["docsOpenAfterClick"] == facts["findings"]
    assert "FAIL" in facts["text"] and "First divergence: node relu" in facts["text"]
    assert shot.stat().st_size > 10_000


def test_charts_fit_a_700_px_window(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_html(mlp_report()))
    facts = open_report(page, tmp_path, width=700).facts
    assert facts["viewportWidth"] <= 700
    assert facts["scrollWidth"] <= facts["viewportWidth"]  # no horizontal scroll
    assert len(facts["chartWidths"]) == 2 and all(0 < right <= facts["viewportWidth"] for right in facts["chartWidths"])


def test_hostile_strings_do_not_execute(tmp_path):
    src = tmp_path / "evil.py"
    src.write_text("import torch\n\nx = 1  # " + TITLE_SCRIPT + "\n")
    report = mlp_report(command="torchaudit scan '" + SCRIPT + "'")
    bad = Finding("TA101", Severity.ERROR, SCRIPT, "message " + TITLE_SCRIPT, module=SCRIPT,
                  location=Location(str(src), 3, 1), fix="fix <img src=x onerror=window['__pwned']=2>")
    page = tmp_path / "evil.html"
    page.write_text(render_html(dataclasses.replace(report, findings=[bad])))
    result = open_report(page, tmp_path)
    assert result.facts["pwned"] is None
    assert result.facts["title"].startswith("torchaudit: ")
    assert result.facts["scripts"] == 1
    assert result.console_errors == []
    text = result.facts["text"]
    assert SCRIPT in text and "x = 1  # " + TITLE_SCRIPT in text and "onerror=window['__pwned']=2>" in text


def test_cli_report_of_hostile_model_in_chromium(tmp_path):
    page = tmp_path / "r.html"
    res = invoke_cli("scan", str(FIXTURES / "hostile_names.py"), "--static-only", "--html", str(page))
    assert res.returncode == 0, res.stderr
    result = open_report(page, tmp_path)
    assert result.facts["pwned"] is None and result.console_errors == []
    assert result.facts["sections"] == SECTIONS
    titles = [t.splitlines()[0] for t in result.facts["boxTitles"]]
    assert SCRIPT in titles  # the module's name, shown literally in the graph's tooltip
    assert "\u2026" + SCRIPT[-25:] in result.facts["text"]  # and, shortened, as the box's label
