"""``torchaudit lint``: the rules that read the source alone, without torch (issue 17).

The fixtures' markers are checked in lint by tests/test_rule_fixtures.py; here: what lint knows
of the rules before importing them, the model it reads from a file, files and folders, the
settings, exit codes and output formats, and that torch is never imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT, invoke_cli
from torchaudit.lint import lint
from torchaudit.rules import manifest

EXAMPLE = EXAMPLES / "mlp_bn_dropout.py"

MODEL = textwrap.dedent(
    """\
    import torch
    import torch.nn as nn
    import torch.nn.functional as F


    class Net(nn.Module):
        def forward(self, x):
            x = F.dropout(x, 0.1)
            return x * torch.ones(x.shape[-1])
    """
)


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _lint(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return invoke_cli("lint", *args, cwd=cwd)


# --- what lint knows before importing any rule ------------------------------------------------


def test_manifest_lists_every_rule_and_the_source_rules() -> None:
    from torchaudit.rules.engine import SOURCE_ALONE, load_rules, reads_only

    rules = load_rules()
    assert manifest.CODES == tuple(rules), f"update rules/manifest.py: CODES = {tuple(rules)!r}"
    source = {code: cls.__module__ for code, cls in rules.items() if reads_only(cls, SOURCE_ALONE)}
    assert manifest.SOURCE_RULES == source, f"update rules/manifest.py: SOURCE_RULES = {source!r}"
    assert rules["TA902"].__module__ == manifest.CRASHED_MODULE


def test_dropout_and_batchnorm_classes_by_name_are_the_installed_torchs() -> None:
    """TA101/TA102 name torch.nn's dropout and batch-norm module classes (lint has no torch)."""
    import torch.nn as nn
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.dropout import _DropoutNd

    from torchaudit.rules.mode.functional import BATCHNORM_MODULES, DROPOUT_MODULES

    def exported(base: type) -> set[str]:
        return {n for n in dir(nn) if isinstance(getattr(nn, n), type) and issubclass(getattr(nn, n), base)}

    assert DROPOUT_MODULES == exported(_DropoutNd)
    assert BATCHNORM_MODULES == exported(_BatchNorm)


def test_rules_command_marks_the_lint_rules() -> None:
    out = invoke_cli("rules", "--json")
    data = json.loads(out.stdout)
    assert {r["code"] for r in data if r["lint"]} == set(manifest.SOURCE_RULES)
    table = invoke_cli("rules").stdout.splitlines()
    for code in manifest.CODES:
        row = next(line for line in table if line.startswith(code))
        assert (" lint " in row) == (code in manifest.SOURCE_RULES), row


# --- the model read from a file ----------------------------------------------------------------


def test_module_classes_are_found_through_imports_and_bases(tmp_path: Path) -> None:
    from torchaudit.analyzer.sources import parse_source
    from torchaudit.rules.source_model import StaticTree

    text = textwrap.dedent(
        """\
        import torch
        from torch import nn
        from torch.nn import Module as M
        import lightning.pytorch as pl
        from layers import Base

        class A(nn.Module): pass
        class B(M): pass
        class C(torch.nn.Sequential): pass
        class D(A): pass
        class E(pl.LightningModule): pass
        class F(Base):
            def forward(self, x): return x
        class G(Base): pass
        class H:
            def forward(self, x): return x
        class P(nn.Parameter): pass
        """
    )
    tree = StaticTree(parse_source(tmp_path / "m.py", text))
    assert list(tree.modules) == ["A", "B", "C", "D", "E", "F"]


def test_calls_from_forward_follow_bases_submodules_and_helpers(tmp_path: Path) -> None:
    path = _write(tmp_path, "model.py", textwrap.dedent(
        """\
        import numpy as np
        import torch.nn as nn


        def helper(x):
            return np.ones(3)


        def unused(x):
            return np.ones(3)


        class Base(nn.Module):
            def base_step(self, x):
                return np.ones(3)


        class Child(nn.Module):
            def used(self, x):
                return np.ones(3)

            def setup_only(self):
                return np.ones(3)

            def forward(self, x):
                return x


        class Net(Base):
            def __init__(self):
                super().__init__()
                self.child = Child()
                self.child.setup_only()

            def forward(self, x):
                return helper(x) + self.base_step(x) + self.child.used(x)
        """
    ))
    found = {(f.rule, f.location.line, f.module) for f in lint(path).findings if f.location is not None}
    assert found == {("TA506", 6, "Net"), ("TA506", 15, "Net"), ("TA506", 20, "Net")}


# --- files, folders, settings, exit codes ----------------------------------------------------


def test_example_exit_code_and_text_output() -> None:
    out = _lint(str(EXAMPLE))
    assert out.returncode == 1, out.stderr
    assert "examples/mlp_bn_dropout.py:18  TA101  Classifier  F.dropout is called without training=self.training" in out.stdout
    assert out.stdout.rstrip().endswith("FAIL: 1 errors, 0 warnings, 0 infos (fail on error)")


def test_folders_are_walked_skipping_environments(tmp_path: Path) -> None:
    _write(tmp_path, "pkg/model.py", MODEL)
    _write(tmp_path, "pkg/sub/more.py", MODEL)
    _write(tmp_path, "pkg/notes.txt", MODEL)
    for skipped in (".venv/lib/m.py", "venv/m.py", "build/m.py", "pkg/__pycache__/m.py", ".git/m.py"):
        _write(tmp_path, skipped, MODEL)
    report = lint(tmp_path)
    files = sorted({Path(f.location.file).resolve().relative_to(tmp_path.resolve()).as_posix()
                    for f in report.findings if f.location is not None})
    assert files == ["pkg/model.py", "pkg/sub/more.py"]
    assert report.extras["lint"]["files"] == 2


def test_a_file_that_does_not_parse_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _write(tmp_path, "bad.py", "def broken(:\n")
    _write(tmp_path, "model.py", MODEL)
    out = _lint("bad.py", "model.py", "missing.py", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "torchaudit: error: cannot parse bad.py:1:12: invalid syntax",
        "torchaudit: error: no such file or folder: missing.py",
    ]
    assert "model.py:8  TA101" in out.stdout  # the other file is still checked
    only_bad = _lint("bad.py", cwd=tmp_path)
    assert only_bad.returncode == 2 and only_bad.stdout == ""  # no PASS over no file


def test_inline_ignore_and_pyproject_settings(tmp_path: Path) -> None:
    _write(tmp_path, "model.py", MODEL.replace("F.dropout(x, 0.1)", "F.dropout(x, 0.1)  # torchaudit: ignore[TA1]"))
    out = _lint("model.py", cwd=tmp_path)
    assert out.returncode == 0 and "TA101" not in out.stdout and "TA501" in out.stdout
    _write(tmp_path, "pyproject.toml", '[tool.torchaudit]\nfail-on = "warning"\nignore = ["TA103"]\noutput-format = "concise"\n')
    out = _lint("model.py", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stdout.splitlines()[0] == "config: pyproject.toml"
    assert out.stdout.splitlines()[1].startswith("model.py:9:20: TA501 [warning] [Net] a tensor is created in forward")
    assert _lint("model.py", "--fail-on", "never", cwd=tmp_path).returncode == 0  # the command line wins
    assert _lint("model.py", "--isolated", cwd=tmp_path).returncode == 0  # default gate: error


def test_selectors_are_checked_without_the_rules_and_model_rules_are_said_skipped(tmp_path: Path) -> None:
    _write(tmp_path, "model.py", MODEL)
    out = _lint("model.py", "--select", "TA999", cwd=tmp_path)
    assert out.returncode == 2 and "unknown rule selector 'TA999'" in out.stderr and out.stdout == ""
    out = _lint("model.py", "--select", "TA5,TA7", cwd=tmp_path)
    assert out.returncode == 0, out.stdout
    assert "TA501" in out.stdout and "TA101" not in out.stdout
    assert "TA701, TA702, TA703, TA704, TA705, TA706, TA707, TA708, TA709: needs the model: torchaudit scan MODEL runs it" in out.stdout


def test_output_formats_github_and_json(tmp_path: Path) -> None:
    _write(tmp_path, "model.py", MODEL)
    out = _lint("model.py", "--output-format", "github", cwd=tmp_path)
    assert out.stdout.splitlines()[0].startswith(
        "::error file=model.py,line=8,col=13,title=TA101 Functional dropout is always on::F.dropout is called")
    out = _lint("model.py", "--output-format", "json", cwd=tmp_path)
    data = json.loads(out.stdout)
    assert [(f["rule"], f["module"], f["location"]["line"]) for f in data["findings"]] == [("TA101", "Net", 8), ("TA501", "Net", 9)]
    assert data["graph"] is None and data["comparisons"] == [] and data["lint"]["files"] == 1
    assert data["summary"]["verdict"] == "fail"


def test_the_fast_parser_answers_as_typer_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A plain command line skips typer (whose option coercion imports pydantic); the output is the same."""
    from torchaudit.cli import _fast_lint

    _write(tmp_path, "model.py", MODEL)
    _write(tmp_path, "bad.py", "x = (\n")
    cases = [["model.py"], ["model.py", "bad.py", "-q", "--select=TA1", "--ignore", "TA102"],
             ["--output-format", "concise", "--fail-on", "never", "model.py"], ["model.py", "--isolated", "-v"]]
    import contextlib

    for argv in cases:
        expected = _lint(*argv, cwd=tmp_path)
        saved, sys.argv = sys.argv, ["torchaudit", "lint", *argv]
        try:
            with contextlib.chdir(tmp_path):
                code = _fast_lint(argv)
        finally:
            sys.argv = saved
        got = capsys.readouterr()
        assert (code, got.out, got.err) == (expected.returncode, expected.stdout, expected.stderr), argv
    for argv in (["--help"], ["model.py", "--sel", "TA1"], ["model.py", "--select"], [], ["--unknown", "model.py"]):
        assert _fast_lint(argv) is None, argv  # typer answers these


@pytest.mark.slow
def test_lint_imports_no_torch(tmp_path: Path) -> None:
    """In a fresh interpreter, through the console script's fast path and through typer."""
    _write(tmp_path, "model.py", MODEL)
    probe = textwrap.dedent(
        f"""\
        import sys
        sys.argv = ["torchaudit", "lint", {str(tmp_path / 'model.py')!r}{{extra}}]
        from torchaudit.cli import main
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        heavy = sorted(m for m in ("torch", "networkx", "numpy", "jinja2", "safetensors") if m in sys.modules)
        print("EXIT", code, "HEAVY", heavy, file=sys.stderr)
        """
    )
    for extra in ("", ', "--help"'):  # --help goes through typer
        done = subprocess.run([sys.executable, "-c", probe.replace("{extra}", extra)], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)
        last = done.stderr.strip().splitlines()[-1]
        assert last == f"EXIT {0 if extra else 1} HEAVY []", done.stderr
