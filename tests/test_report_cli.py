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


def test_a_report_that_fails_to_write_at_the_end_leaves_the_others_and_the_summary(tmp_path, monkeypatch):
    import torchaudit.reports.files as files

    real = files._write

    def full_disk(path: str, text: str) -> None:  # a write that fails after the early checks passed
        if path.endswith(".html"):
            raise OSError(28, "No space left on device")
        real(path, text)

    monkeypatch.setattr(files, "_write", full_disk)
    html, md = tmp_path / "r.html", tmp_path / "r.md"
    res = invoke_cli("scan", "examples/mlp_bn_dropout.py", "--static-only", "--html", str(html), "--markdown", str(md))
    assert res.returncode == 2
    assert md.read_text().startswith("### ") and not html.exists()
    assert "FAIL: " in res.stdout  # the summary was printed before the error
    assert res.stderr.strip().splitlines() == [f"torchaudit: error: --html {html}: cannot write the report (No space left on device). "
                                               "pass a path in a folder that you can write to (missing folders are created)."]


def test_quiet_and_verbose_set_the_terminal_detail(tmp_path):
    quiet = invoke_cli("scan", "examples/mlp_bn_dropout.py", "--static-only", "--quiet")
    assert quiet.returncode == 1 and "TA101" in quiet.stdout and "TA106" not in quiet.stdout and "\ninfos (" not in quiet.stdout
    verbose = invoke_cli("scan", "examples/mlp_bn_dropout.py", "--static-only", "--verbose")
    assert "TA107  drop" in verbose.stdout or "TA107  bn" in verbose.stdout  # each info on its own line
    both = invoke_cli("scan", "examples/mlp_bn_dropout.py", "--quiet", "--verbose")
    assert both.returncode == 2 and "contradict" in both.stderr


def test_diff_writes_every_report_format_with_its_tensor_table(tmp_path):
    import torch

    from tests.dynamic import models as M
    from tests.dynamic.test_cli_api import MODELS

    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.manual_seed(0)
    torch.save(M.LinearBN().state_dict(), a)
    torch.save(M.LinearBN().state_dict(), b)  # other random weights: every tensor changed
    out = {fmt: tmp_path / f"d.{fmt}" for fmt in ("json", "html", "md", "sarif")}
    res = invoke_cli("diff", f"{MODELS}:LinearBN", str(a), str(b), "--input-shape", "4,6", "--json", str(out["json"]),
                     "--html", str(out["html"]), "--markdown", str(out["md"]), "--sarif", str(out["sarif"]))
    assert res.returncode in (0, 1), res.stderr
    assert json.loads(out["json"].read_text())["tensor_diff"]
    assert "fc.weight" in out["html"].read_text() and "fc.weight" in out["md"].read_text()
    assert json.loads(out["sarif"].read_text())["version"] == "2.1.0"


def test_output_formats_concise_json_and_github(tmp_path):
    concise = invoke_cli("scan", "examples/mlp_bn_dropout.py", "--static-only", "--output-format", "concise")
    lines = concise.stdout.strip().splitlines()
    assert concise.returncode == 1 and lines[0].startswith("examples/mlp_bn_dropout.py:18:13: TA101 [error] [<root>] F.dropout")
    assert lines[-1].startswith("FAIL: 1 errors") and not any("fix:" in line for line in lines)
    as_json = invoke_cli("scan", "examples/mlp_bn_dropout.py", "--static-only", "--output-format", "JSON")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["summary"]["verdict"] == "fail"
    github = invoke_cli("scan", "examples/mlp_bn_dropout.py", "--static-only", "--output-format", "github")
    first = github.stdout.splitlines()[0]
    assert first.startswith("::error file=examples/mlp_bn_dropout.py,line=18,col=13,title=TA101 ")
    assert "::notice " in github.stdout and github.stdout.splitlines()[-1].startswith("torchaudit FAIL:")
    clash = invoke_cli("scan", "examples/mlp_bn_dropout.py", "--output-format", "json", "--sarif", "-")
    assert clash.returncode == 2 and "both write to stdout" in clash.stderr
    bad = invoke_cli("scan", "examples/mlp_bn_dropout.py", "--output-format", "xml")
    assert bad.returncode == 2 and "text, concise, json, github" in bad.stderr


def test_help_groups_options_and_says_exit_codes():
    res = invoke_cli("scan", "--help")
    panels = [p for p in ("Inputs", "Checkpoint", "Comparisons", "Rules and gate", "Reports", "Configuration") if f"─ {p} " in res.stdout]
    assert panels == ["Inputs", "Checkpoint", "Comparisons", "Rules and gate", "Reports", "Configuration"]
    options = res.stdout[res.stdout.index("─ Inputs "):]  # typer prints an argument's type, <str>, whatever its metavar
    assert "<str>" not in options and "<list" not in options and "<bool>" not in options
    assert "CODES" in options and "CFG" in options and "TARGET" in res.stdout
    assert "Exit codes: 0 pass" in " ".join(res.stdout.split())
    assert invoke_cli("-V").stdout.startswith("torchaudit ")
