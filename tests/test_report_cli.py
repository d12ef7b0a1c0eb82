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


def test_unwritable_report_path_is_one_line_and_exit_2(tmp_path):
    folder = tmp_path / "a-folder"  # checked before the model is imported: nothing runs, nothing is written
    folder.mkdir()
    ok = tmp_path / "r.md"
    res = invoke_cli("scan", "examples/mlp_bn_dropout.py", "--static-only", "--markdown", str(ok), "--html", str(folder))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchaudit: error: --html ") and "Traceback" not in res.stderr
    assert not ok.exists()
    # a missing folder is made
    missing = tmp_path / "no" / "such" / "dir" / "r.html"
    res = invoke_cli("scan", "examples/mlp_bn_dropout.py", "--static-only", "--html", str(missing))
    assert res.returncode == 1 and missing.is_file(), res.stderr


def test_help_lists_the_report_options():
    res = invoke_cli("scan", "--help")
    assert res.returncode == 0
    for flag in ("--html", "--markdown", "--sarif"):
        assert flag in res.stdout
