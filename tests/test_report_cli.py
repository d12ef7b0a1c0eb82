"""--html, --markdown and --sarif on the command line: written on pass and on fail, clean errors."""

from __future__ import annotations

import json

from tests.conftest import invoke_cli


def test_reports_are_written_when_the_gate_fails(tmp_path):
    html, md, sarif = tmp_path / "r.html", tmp_path / "r.md", tmp_path / "r.sarif"
    res = invoke_cli("scan", "examples/data_dependent.py", "--static-only", "--fail-on", "info",
                  "--html", str(html), "--markdown", str(md), "--sarif", str(sarif))
    assert res.returncode == 1, res.stderr
    assert "FAIL" in res.stdout
    page = html.read_text()
    assert "TA901" in page and "hooks" in page
    assert "--fail-on info" in page  # the command to reproduce, and the gate in the verdict
    assert md.read_text().startswith("### \u274c torchaudit FAIL: `examples/data_dependent.py`")
    run = json.loads(sarif.read_text())["runs"][0]
    assert run["invocations"][0]["exitCode"] == 1 and "TA901" in {r["ruleId"] for r in run["results"]}


def test_missing_report_folders_are_created(tmp_path):
    html = tmp_path / "no" / "such" / "dir" / "r.html"
    res = invoke_cli("scan", "examples/mlp_bn_dropout.py", "--static-only", "--html", str(html))
    assert res.returncode == 1, res.stderr
    assert "TA101" in html.read_text()


def test_unwritable_report_path_is_one_line_and_exit_2_after_writing_the_others(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    bad = blocker / "r.html"  # a file where a folder should be: cannot be created
    ok = tmp_path / "r.md"
    res = invoke_cli("scan", "examples/mlp_bn_dropout.py", "--static-only", "--html", str(bad), "--markdown", str(ok))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"torchaudit: error: --html {bad}: cannot write") and "Traceback" not in res.stderr
    assert not bad.exists()
    assert ok.read_text().startswith("### ")  # the report after the failed one is still written


def test_help_lists_the_report_options():
    res = invoke_cli("scan", "--help")
    assert res.returncode == 0
    for flag in ("--html", "--markdown", "--sarif"):
        assert flag in res.stdout
