"""The HTML report: one self-contained page a reviewer reads top to bottom."""

from __future__ import annotations

import dataclasses
import html
import json
import re

from markupsafe import escape as _escape

from tests.conftest import FIXTURES, ROOT, invoke_cli
from tests.report_samples import MLP, mlp_report
from torchaudit.report import Finding, Location, Severity, Status
from torchaudit.reports.graph_view import graph_view_of
from torchaudit.reports.html import render_html

SECTIONS = ("verdict", "findings", "comparisons", "graph", "scanned", "environment")  # what was scanned and the environment last, collapsed
HOSTILE = FIXTURES / "hostile_names.py"
SCRIPT = "<script>window['__pwned']=1</script>"
IMG = "<img src=x onerror=window['__pwned']=2>"


def _section(page: str, name: str) -> str:
    m = re.search(rf'<section id="{name}"[^>]*>(.*?)</section>', page, re.S)
    assert m, f"no section {name}"
    return m.group(1)


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def test_sections_in_reading_order_with_verdict_and_command():
    page = render_html(mlp_report(command="torchaudit scan examples/mlp_bn_dropout.py --html r.html"))
    positions = [page.index(f'<section id="{s}"') for s in SECTIONS]
    assert positions == sorted(positions)
    verdict = _text(_section(page, "verdict"))
    assert "FAIL" in verdict
    assert "1 finding at or above error fails the gate (--fail-on error)" in verdict
    assert "TA101" in verdict and "examples/mlp_bn_dropout.py:18:13" in verdict
    assert "1 error, 1 warning, 1 info (fail on error)" in verdict
    scanned = _text(_section(page, "scanned"))
    assert "torchaudit scan examples/mlp_bn_dropout.py --html r.html" in scanned
    assert "Classifier" in scanned and "fx" in scanned
    assert "2.13" in _text(_section(page, "environment"))
    # a reviewer reads the verdict, findings and comparisons first; what was scanned and the
    # environment come last, collapsed
    for name in ("scanned", "environment"):
        assert _section(page, name).lstrip().startswith("<details><summary><h2>")


def test_findings_grouped_by_severity_with_marked_source_line():
    page = render_html(mlp_report())
    findings = _section(page, "findings")
    order = [findings.index(f'id="severity-{s}"') for s in ("error", "warning", "info")]
    assert order == sorted(order)
    marked = re.findall(r'<span class="mark"><span class="ln">(\d+)</span>(.*?)</span>', findings)
    source = MLP.read_text().splitlines()
    assert ("18", esc(source[17])) in marked  # TA101's line, read from the file
    assert ("13", esc(source[12])) in marked
    assert "pass training=self.training" in findings


def test_rule_docs_are_expandable():
    report = mlp_report()
    crash = Finding("TA902", Severity.WARNING, "A rule raised an exception", "rule TA205 raised KeyError",
                    evidence={"failed_rule": "TA205"}, fix="report it")
    page = render_html(dataclasses.replace(report, findings=report.findings + [crash]))
    details = re.findall(r'<details class="docs"><summary>About (TA\d+)', page)
    assert "TA902" in details
    docs = _text(page[page.index("About TA902"):])
    assert "What it finds" in docs and "Why it matters" in docs and "Fix" in docs


def test_comparison_card_chart_and_state_diff():
    page = render_html(mlp_report())
    comparisons = _section(page, "comparisons")
    text = _text(comparisons)
    card = _text(re.search(r'<div class="card first-divergence">(.*?)</div>', comparisons, re.S).group(1))
    assert "node relu" in card and "examples/mlp_bn_dropout.py:17" in card
    assert "local (this node's own)" in card and "0.002" in card  # dtype: local error of relu
    assert "inherited (from upstream)" in card and "total (what you see)" in card
    assert "x = F.relu(self.bn(self.fc1(x)))" in card  # the source line, read at render time
    charts = re.findall(r'<svg class="chart".*?</svg>', comparisons, re.S)
    assert len(charts) == 2  # dtype and reload have nodes; the skipped device comparison has none
    assert charts[0].count("<polyline") == 2 and "first divergence: relu (node 3)" in charts[0]
    assert re.search(r'<table class="state-diff">.*head\.calls.*python_attribute.*20.*bn\.running_mean', comparisons, re.S)
    assert "device (cpu:float32:eval vs cuda:float32:eval) was skipped: CUDA is not available" in text
    legends = re.findall(r'<div class="legend">(.*?)</div>', comparisons, re.S)
    assert "first divergence" in legends[0]  # dtype has one


def test_a_chart_without_a_divergence_has_no_divergence_legend():
    import dataclasses

    from tests.report_samples import dtype_comparison

    sample = dtype_comparison()
    matched = dataclasses.replace(sample, status=Status.MATCHED, first_divergence=None,
                                  nodes=tuple(dataclasses.replace(n, diverged=False) for n in sample.nodes))
    page = render_html(dataclasses.replace(mlp_report(), comparisons=[matched]))
    legends = re.findall(r'<div class="legend">(.*?)</div>', _section(page, "comparisons"), re.S)
    assert legends and not any("first divergence" in legend for legend in legends)


def _graph_data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="graph-data">(.*?)</script>', page, re.S)
    assert m, "no graph data"
    return json.loads(m.group(1))


def test_graph_view_marks_divergence_and_severity():
    report = mlp_report()
    page = render_html(report)
    data = _graph_data(_section(page, "graph"))
    tree = graph_view_of(report)
    names = [it.name for it in tree.items]  # the page stores most names as "" and derives them
    modules = {names[i]: i for i, k in enumerate(data["kind"]) if k == "m"}
    dtype, reload = data["colourings"]
    assert data["default"] == "c0" and dtype["name"] == "dtype" and dtype["expected"] is False
    assert dtype["divergenceName"] == "relu" and reload["divergenceName"] == "bn"
    path = [names[i] for i in reload["path"]]
    assert path == ["x", "fc1", "bn"]  # from the input to the first divergence
    assert reload["worst"][modules["bn"]] > 1 >= reload["worst"][modules["fc1"]]
    findings = data["findings"]
    assert findings[str(modules["bn"])] == [2, "TA106"] and findings[str(modules["drop"])] == [1, "TA107"]
    assert str(modules["fc1"]) not in findings
    selector = re.search(r'<select id="graph-colour">(.*?)</select>', page, re.S).group(1)
    assert re.findall(r'<option value="([^"]+)"', selector) == ["c0", "c1", "findings", "none"]  # device: skipped


def test_graph_without_javascript_lists_the_top_level_boxes():
    page = render_html(mlp_report())
    fallback = re.search(r"<noscript>(.*?)</noscript>", _section(page, "graph"), re.S)
    assert fallback
    text = _text(fallback.group(1))
    assert "The interactive graph needs JavaScript" in text
    assert "worst local error / tolerance (dtype)" in text
    rows = re.findall(r"<tr><td[^>]*>([^<]+)</td>", fallback.group(1))
    assert rows == ["x", "fc1", "bn", "relu", "dropout", "drop", "fc2", "output"]


def test_page_is_self_contained():
    page = render_html(mlp_report())
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(//|[a-z]+:)""", page, re.I)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert page.count("<style>") == 1 and page.count("<script>") == 1  # and the graph's data, which does not run
    assert page.count('<script type="application/json" id="graph-data">') == 1


def test_model_strings_are_escaped(tmp_path):
    src = tmp_path / "evil.py"
    src.write_text("import torch\n\nx = 1  # " + SCRIPT + "\n")
    report = mlp_report(command="torchaudit scan '" + SCRIPT + "'")
    bad = Finding("TA101", Severity.ERROR, SCRIPT, "message " + IMG, module=SCRIPT, node=IMG,
                  location=Location(str(src), 3, 1), fix="fix " + SCRIPT)
    page = render_html(dataclasses.replace(report, findings=[bad], target={**report.target, "spec": IMG}))
    assert SCRIPT not in page and IMG not in page
    assert "<img" not in page
    assert page.count("<script>") == 1  # the page's own
    assert esc(SCRIPT) in page and "x = 1  # " + esc(SCRIPT) in page


def test_cli_writes_html_of_hostile_model(tmp_path):
    out = tmp_path / "r.html"
    res = invoke_cli("scan", str(HOSTILE), "--static-only", "--html", str(out))
    assert res.returncode == 0, res.stderr
    page = out.read_text()
    assert SCRIPT not in page and IMG not in page and page.count("<script>") == 1
    graph = _text(_section(page, "graph"))
    assert SCRIPT in graph and IMG in graph  # shown literally, in the table of boxes for a page without script


def test_cli_html_of_bundled_examples(tmp_path):
    for name, tracer in (("transformer_block", "fx"), ("data_dependent", "hooks")):
        out = tmp_path / f"{name}.html"
        res = invoke_cli("scan", f"examples/{name}.py", "--static-only", "--html", str(out), cwd=ROOT)
        assert res.returncode in (0, 1), res.stderr
        page = out.read_text()
        assert all(f'<section id="{s}"' in page for s in SECTIONS)
        assert tracer in _text(_section(page, "scanned"))
        assert ("PASS" if res.returncode == 0 else "FAIL") in _text(_section(page, "verdict"))
        assert _graph_data(_section(page, "graph"))["kind"]


def esc(text: str) -> str:
    """Text as jinja2's autoescape writes it."""
    return str(_escape(text))
