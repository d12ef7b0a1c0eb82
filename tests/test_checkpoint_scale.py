"""Structure checks of a large safetensors file read its header, never its tensors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # writes and reads a 200 MB file, in a fresh interpreter


def test_structure_checks_of_a_200mb_safetensors_stay_under_50mb_peak_rss(tmp_path: Path) -> None:
    script = ROOT / "benchmarks" / "bench_checkpoint_header.py"
    out = subprocess.run(
        [sys.executable, str(script), "--size-mb", "200", "--dir", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["file_mb"] >= 199
    header = result["header"]
    assert header["findings"] == ["TA304"]  # the rules really compared the header with the model
    assert header["delta_mb"] < 50, header
    # the control reads every tensor: the same measurement sees it, so the figure above means something
    assert result["control"]["delta_mb"] > 150, result["control"]
