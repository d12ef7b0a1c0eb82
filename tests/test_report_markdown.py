"""The Markdown summary for pull-request comments."""

from __future__ import annotations

import dataclasses

import pytest

from tests.conftest import ROOT, invoke_cli
from tests.golden import check_golden
from tests.report_samples import mlp_report
from torchaudit.report import Finding, Location, Severity
from torchaudit.reports.markdown import MAX_LINES, render_markdown


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # paths are shown relative to the working directory


def test_golden():
    check_golden("mlp_bn_dropout.md", render_markdown(mlp_report()))


def test_verdict_counts_findings_and_first_divergences():
    md = render_markdown(mlp_report())
    lines = md.splitlines()
    assert lines[0] == "### \u274c torchaudit FAIL: `examples/mlp_bn_dropout.py`"
    assert "| 1 | 1 | 1 | error | dtype diverged, reload diverged, device skipped |" in lines
    assert any(l.startswith("- **error** `TA101` `examples/mlp_bn_dropout.py:18:13`") for l in lines)
    dtype = next(l for l in lines if l.startswith("- `dtype`"))
    assert "**diverged** first at node `relu`" in dtype and "own error 0.002" in dtype
    reload = next(l for l in lines if l.startswith("- `reload`"))
    assert "`bn`" in reload and "`head.calls`" in reload and "`bn.running_mean`" in reload
    assert "- `device`" in md and "CUDA is not available" in md


def test_at_most_60_lines_with_many_findings():
    report = mlp_report()
    many = [
        Finding("TA201", Severity.ERROR if i % 3 == 0 else Severity.WARNING, "Plain tensor attribute",
                f"block{i}.scale is a plain tensor attribute", module=f"blocks.{i}",
                location=Location(str(ROOT / "examples" / "mlp_bn_dropout.py"), i + 1), fix="register it as a buffer")
        for i in range(300)
    ]
    md = render_markdown(dataclasses.replace(report, findings=many))
    lines = md.splitlines()
    assert len(lines) <= MAX_LINES == 60
    assert any(l.startswith("**Findings** (15 of 300") for l in lines)
    assert "- \u2026 and 285 more in the full report" in lines
    assert any(l.startswith("- `dtype`") for l in lines)  # comparisons still shown


def test_model_text_cannot_break_the_markdown():
    report = mlp_report()
    bad = Finding("TA101", Severity.ERROR, "t", "a | b\n<script>alert(1)</script> **bold** `code`",
                  module="m`x", fix="[link](javascript:alert(1))")
    md = render_markdown(dataclasses.replace(report, findings=[bad]))
    line = next(l for l in md.splitlines() if "TA101" in l and l.startswith("- "))
    assert "<script>" not in md and "&lt;script&gt;" in line
    assert "a \\| b" in line and "\\*\\*bold\\*\\*" in line and "\\[link\\]" in line
    assert "`m'x`" in line


def test_cli_writes_markdown(tmp_path):
    out = tmp_path / "r.md"
    res = invoke_cli("scan", "examples/transformer_block.py", "--static-only", "--markdown", str(out))
    assert res.returncode in (0, 1), res.stderr
    text = out.read_text()
    verdict = "PASS" if res.returncode == 0 else "FAIL"
    assert text.startswith("### ") and f"torchaudit {verdict}: `examples/transformer_block.py`" in text
    assert verdict in res.stdout
    assert len(text.splitlines()) <= 60
