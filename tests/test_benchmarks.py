"""The benchmark scripts run and print what README says (their figures are not asserted:
timing belongs to the scripts, never to tests); the start-up path does not import torch."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=str(ROOT), timeout=600)


def test_version_and_help_do_not_import_torch() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_startup import torch_imported
    finally:
        sys.path.pop(0)
    assert torch_imported("--version") is False
    assert torch_imported("--help") is False
    # the probe can see an import: a command that needs torch does import it
    probe = _run("-c", "import sys, torchaudit.api; print('torch' in sys.modules)")
    assert probe.stdout.strip() == "True"


def test_bench_static_prints_time_per_node_for_each_size() -> None:
    out = _run("benchmarks/bench_static.py", "--blocks", "2", "4", "--repeat", "1", "--json")
    assert out.returncode in (0, 1), out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["nodes"] for r in result["rows"]] == [6 * 2 + 3, 6 * 4 + 3]  # x, 6 per block, head, output
    assert result["per_node_ratio"] >= 1.0 and result["target"] == 1.5
