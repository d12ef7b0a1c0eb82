"""The HTML report in a real headless Chromium: it renders, runs no foreign script, errs nowhere."""

from __future__ import annotations

import dataclasses

import pytest

from tests.browser import click_box, graph_state, open_report, why_no_browser
from tests.conftest import FIXTURES, invoke_cli
from tests.report_samples import mlp_report, net_report
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
    assert facts["boxes"] == len(graph_view_of(report).top)
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
    assert result.facts["scripts"] == 2  # the page's script and the graph's data (type application/json: not run)
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
    assert SCRIPT + " (Linear)" in titles  # the module's name, shown literally in the graph's tooltip
    assert SCRIPT[:20] in result.facts["text"]  # and, cut, as the box's label


# the graph explorer (issue 12, item 14) ------------------------------------------------------

def _graph_page(tmp_path, report):
    page = tmp_path / "graph.html"
    page.write_text(render_html(report))
    return page


def test_graph_opens_on_top_level_blocks_and_a_click_opens_and_closes_one(tmp_path):
    report = net_report(2, 2, diverge_at=(13, 7))

    def act(page):
        facts = {"initial": graph_state(page)}
        click_box(page, "stages")
        facts["stages"] = graph_state(page)
        click_box(page, "stages.1")
        facts["stage1"] = graph_state(page)
        click_box(page, "stages")  # the open box's title bar: closes it and all inside
        facts["closed"] = graph_state(page)
        return facts

    result = open_report(_graph_page(tmp_path, report), tmp_path, act=act)
    assert result.console_errors == []
    facts = result.facts
    assert [b["label"] for b in facts["initial"]["boxes"]] == ["x", "stages", "head", "output"]
    assert facts["initial"]["open"] == [] and facts["initial"]["edges"] == 3
    assert [b["label"] for b in facts["stages"]["boxes"]] == ["x", "stages.0", "stages.1", "head", "output"]
    assert [o["label"] for o in facts["stages"]["open"]] == ["\u2212 stages \u00b7 ModuleList"]
    assert [b["label"] for b in facts["stage1"]["boxes"]] == ["x", "stages.0", "blocks.0", "blocks.1", "head", "output"]
    assert facts["closed"] == facts["initial"]
    # hover: full module path and type, node count, worst error
    stage1 = next(b for b in facts["stages"]["boxes"] if b["label"] == "stages.1")
    assert stage1["title"].splitlines()[:3] == [
        "stages.1 (Stage)", "10 nodes", "worst local error / tolerance (dtype): 200"]


def test_graph_colours_by_the_selected_comparison_and_draws_the_path_to_its_divergence(tmp_path):
    report = net_report(2, 2, diverge_at=(13, 7))

    def act(page):
        click_box(page, "stages")
        facts = {"dtype": graph_state(page)}
        page.select_option("#graph-colour", "c1")
        facts["reload"] = graph_state(page)
        page.select_option("#graph-colour", "findings")
        facts["findings"] = graph_state(page)
        page.select_option("#graph-colour", "none")
        facts["none"] = graph_state(page)
        return facts

    facts = open_report(_graph_page(tmp_path, report), tmp_path, act=act).facts

    def classes(state):
        return {b["label"]: set(b["cls"].split()) for b in state["boxes"]}

    dtype, reload = classes(facts["dtype"]), classes(facts["reload"])
    # dtype diverges at relu_2, in stages.1.blocks.0: its box red, its path from x through stages.0 in blue
    assert {"fd", "r4"} <= dtype["stages.1"] and "fd" not in dtype["stages.0"]
    assert {"path", "r1"} <= dtype["stages.0"] and "path" in dtype["x"]
    assert "path" not in dtype["head"] and "path" not in dtype["output"]
    assert facts["dtype"]["pathEdges"] == 2  # x -> stages.0 -> stages.1
    # reload diverges at stages.0.blocks.1.norm: the other box now
    assert {"fd", "r4"} <= reload["stages.0"] and "fd" not in reload["stages.1"] and "path" not in reload["stages.1"]
    assert facts["reload"]["pathEdges"] == 1
    assert all({"s0"} <= c for c in classes(facts["findings"]).values())  # no findings in this scan
    assert all(not (c & {"fd", "path", "r0", "r1", "r2", "r3", "r4", "s0"}) for c in classes(facts["none"]).values())


def test_graph_without_javascript_shows_the_top_level_boxes(tmp_path):
    report = net_report(2, 2, diverge_at=(13, 7))
    result = open_report(_graph_page(tmp_path, report), tmp_path, javascript=False)
    text = result.facts["text"]
    assert "The interactive graph needs JavaScript" in text
    assert "worst local error / tolerance (dtype)" in text
    assert "stages\tModuleList\t20\t200" in text  # the top-level box holding the divergence
    assert result.facts["boxes"] == 0


@pytest.mark.parametrize("width", [700])
def test_graph_stays_in_its_box_at_700_px(tmp_path, width):
    report = net_report(2, 2, diverge_at=(13, 7))

    def act(page):
        for name in ("stages", "stages.0", "stages.1", "stages.0.blocks.0"):
            click_box(page, name)
        return {"opened": graph_state(page), "scroll": page.evaluate("document.documentElement.scrollWidth")}

    facts = open_report(_graph_page(tmp_path, report), tmp_path, width=width, act=act).facts
    assert facts["scroll"] <= facts["viewportWidth"]  # a wide graph scrolls inside its own box, not the page


def test_5000_node_graph_loads_and_opens_within_seconds(tmp_path):
    """Generous bounds only: benchmarks/html_report_size.py prints the real figures."""
    report = net_report(10, 100, diverge_at=(3500, 1200))

    def act(page):
        return {"expand_ms": [click_box(page, name) for name in ("stages", "stages.7", "blocks.0 \u2026 blocks.9")],
                "opened": graph_state(page)}

    result = open_report(_graph_page(tmp_path, report), tmp_path, act=act)
    assert result.console_errors == []
    facts = result.facts
    assert facts["loadSeconds"] < 5 and max(facts["expand_ms"]) < 5000
    assert len(facts["opened"]["boxes"]) < 40  # only what is open is drawn
    assert any("fd" in b["cls"].split() for b in facts["opened"]["boxes"])
