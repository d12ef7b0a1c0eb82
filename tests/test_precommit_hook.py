"""The pre-commit hooks in .pre-commit-hooks.yaml, run as pre-commit runs them (without
installing pre-commit): the hook's ``entry`` and ``args`` followed by the staged files its
``types`` select, in a temporary git repository."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT

yaml = pytest.importorskip("yaml")  # PyYAML: transformers (a dev dependency) requires it
tomllib = pytest.importorskip("tomllib")

HOOKS = ROOT / ".pre-commit-hooks.yaml"
BAD = textwrap.dedent(
    """\
    import torch.nn as nn
    import torch.nn.functional as F


    class Head(nn.Module):
        def forward(self, x):
            return F.dropout(x, 0.1)
    """
)


def _hooks() -> dict[str, dict]:
    return {h["id"]: h for h in yaml.safe_load(HOOKS.read_text())}


def test_hooks_are_declared_for_python_files() -> None:
    hooks = _hooks()
    assert set(hooks) == {"torchaudit-lint", "torchaudit-lint-system"}
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for hook in hooks.values():
        assert hook["types"] == ["python"] and hook["language"] in ("python", "system")
        assert shlex.split(hook["entry"])[0] in scripts  # a console script the package installs
        assert shlex.split(hook["entry"])[1] == "lint"


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout


def _run_hook(hook: dict, repo: Path) -> subprocess.CompletedProcess[str]:
    """What pre-commit does for a hook: the staged files that match ``types`` appended to the entry."""
    staged = _git(repo, "diff", "--cached", "--name-only", "--diff-filter=ACMR").split()
    files = [f for f in staged if f.endswith((".py", ".pyi"))]  # identify's "python" tag, by extension
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    command = [*shlex.split(hook["entry"]), *hook.get("args", []), *files]
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # runs the installed console script in a fresh interpreter
def test_hook_entry_fails_a_commit_with_a_finding_and_passes_it_once_fixed(tmp_path: Path) -> None:
    hook = _hooks()["torchaudit-lint"]
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "model").mkdir()
    (repo / "model" / "head.py").write_text(BAD)
    (repo / "notes.md").write_text("F.dropout(x, 0.1)\n")
    (repo / "pyproject.toml").write_text('[tool.torchaudit]\nignore = ["TA103"]\n')
    _git(repo, "add", ".")
    out = _run_hook(hook, repo)
    assert out.returncode == 1, out.stderr
    assert "model/head.py:7  TA101  Head  F.dropout is called without training=self.training" in out.stdout
    assert "notes.md" not in out.stdout and "Traceback" not in out.stderr
    (repo / "model" / "head.py").write_text(BAD.replace("F.dropout(x, 0.1)", "F.dropout(x, 0.1, training=self.training)"))
    _git(repo, "add", ".")
    out = _run_hook(hook, repo)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[-1] == "PASS: 0 errors, 0 warnings, 0 infos (fail on error)"
