from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The tests' models and tensors are tiny: torch's intra-op threads only add synchronization,
# and on a busy 2-core machine a second OpenMP thread makes small ops (layer_norm) ~30x slower.
# Set before torch is imported, so it holds here and in every subprocess the tests start.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def examples() -> Path:
    return EXAMPLES


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> "subprocess.CompletedProcess[str]":
    """Run the real command line in a subprocess: exit code, stdout and stderr together."""
    return subprocess.run(
        [sys.executable, "-m", "torchaudit", *args],
        capture_output=True,
        text=True,
        cwd=str(cwd or ROOT),
        timeout=timeout,
    )


def invoke_cli(*args: str, cwd: Path | None = None) -> "subprocess.CompletedProcess[str]":
    """The same command line in this process, through typer's CliRunner: exit code, stdout and
    stderr as ``run_cli`` returns them, without a new interpreter importing torch for each call.
    ``sys.argv`` is what the console script would see (reports quote the command). An exception
    that escapes the command is raised here, never mistaken for an exit code."""
    from typer.testing import CliRunner

    from torchaudit.cli import app

    saved = sys.argv
    sys.argv = ["torchaudit", *args]
    try:
        with contextlib.chdir(cwd or ROOT):
            result = CliRunner().invoke(app, list(args))
    finally:
        sys.argv = saved
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(["torchaudit", *args], result.exit_code, result.stdout, result.stderr)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` need a CUDA device: skip them, saying so, where there is none."""
    cuda_items = [item for item in items if item.get_closest_marker("cuda")]
    if not cuda_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
    for item in cuda_items:
        item.add_marker(skip)
