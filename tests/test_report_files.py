"""Writing reports: ``Report.write`` (format from the suffix, ``format=``, ``-`` = stdout) and
``write_reports``, which creates missing folders and, when a write fails, still writes every
other report before it says which failed."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT
from tests.report_samples import mlp_report
from torchaudit.errors import OptionError
from torchaudit.reports.files import ReportWriteError, write_reports
from torchaudit.reports.html import render_html
from torchaudit.reports.json_report import render_json
from torchaudit.reports.markdown import render_markdown
from torchaudit.reports.sarif import render_sarif


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # SARIF and Markdown paths are relative to the working directory


def _expected(fmt: str) -> str:
    report = mlp_report()
    return {"json": render_json(report) + "\n", "html": render_html(report), "markdown": render_markdown(report),
            "sarif": render_sarif(report) + "\n"}[fmt]


@pytest.mark.parametrize("name, fmt", [
    ("r.json", "json"), ("r.html", "html"), ("r.htm", "html"), ("r.md", "markdown"), ("r.markdown", "markdown"),
    ("r.sarif", "sarif"), ("r.sarif.json", "sarif"), ("R.SARIF.JSON", "sarif"),
])
def test_write_takes_the_format_from_the_suffix(name, fmt, tmp_path):
    path = tmp_path / "new" / "folder" / name  # missing folders are created
    mlp_report().write(path)
    assert path.read_text(encoding="utf-8") == _expected(fmt)
    if fmt == "sarif":
        assert json.loads(path.read_text())["version"] == "2.1.0"


@pytest.mark.parametrize("fmt", ["json", "html", "markdown", "md", "sarif", "SARIF"])
def test_format_overrides_the_suffix(fmt, tmp_path):
    path = tmp_path / "report.txt"
    mlp_report().write(str(path), format=fmt)
    assert path.read_text(encoding="utf-8") == _expected({"md": "markdown"}.get(fmt.lower(), fmt.lower()))


@pytest.mark.parametrize("fmt", ["json", "html", "markdown", "sarif"])
def test_dash_writes_to_stdout(fmt, capsys):
    mlp_report().write("-", format=fmt)
    assert capsys.readouterr().out == _expected(fmt)


def test_unknown_suffix_or_format_names_the_choices(tmp_path):
    report = mlp_report()
    with pytest.raises(OptionError) as exc:
        report.write(tmp_path / "report.txt")
    assert "report.txt" in exc.value.message
    for choice in (".json", ".html", ".md", ".markdown", ".sarif", ".sarif.json", "json", "html", "markdown", "sarif"):
        assert choice in exc.value.fix
    with pytest.raises(OptionError, match="'pdf'") as exc:
        report.write(tmp_path / "report.json", format="pdf")
    assert "json, html, markdown, sarif" in exc.value.fix
    with pytest.raises(OptionError, match="stdout"):
        report.write("-")
    assert not list(tmp_path.iterdir())


def test_write_reports_creates_missing_folders(tmp_path):
    paths = {fmt: str(tmp_path / fmt / "deeper" / f"r.{fmt}") for fmt in ("json", "html", "markdown", "sarif")}
    assert write_reports(mlp_report(), **paths) == list(paths.values())
    for fmt, path in paths.items():
        assert open(path, encoding="utf-8").read() == _expected(fmt)


def test_a_failed_write_does_not_stop_the_others(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    bad_html, bad_sarif = blocker / "r.html", blocker / "sub" / "r.sarif"  # a file where a folder should be
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    with pytest.raises(ReportWriteError) as exc:
        write_reports(mlp_report(), html=str(bad_html), json=str(js), markdown=str(md), sarif=str(bad_sarif))
    err = exc.value
    assert isinstance(err, OptionError)  # the CLI's exit 2 family
    assert [(f.flag, f.path) for f in err.failures] == [("--html", str(bad_html)), ("--sarif", str(bad_sarif))]
    assert list(err.written) == [str(js), str(md)]
    assert md.read_text(encoding="utf-8") == _expected("markdown") and js.read_text(encoding="utf-8") == _expected("json")
    line = err.one_line()
    assert f"--html {bad_html}: cannot write the report" in line and f"--sarif {bad_sarif}" in line
    assert "\n" not in line
