"""The rule engine through the command line (typer's CliRunner, in process): selection, config, inline ignores,
baselines, exit codes, determinism."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torchaudit
from tests.conftest import EXAMPLES, invoke_cli
from torchaudit.reports.json_report import render_json

EXAMPLE = EXAMPLES / "mlp_bn_dropout.py"


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "model.py"
    shutil.copy(EXAMPLE, target)
    return target


def _scan(*args: str, cwd: Path | None = None) -> tuple[int, dict, str]:
    """``scan ARGS --json -``, static only unless ARGS name the comparisons (--compare)."""
    if "--compare" not in args:
        args = (*args, "--static-only")
    out = invoke_cli("scan", *args, "--json", "-", cwd=cwd)
    data = json.loads(out.stdout) if out.stdout.strip() else {}
    return out.returncode, data, out.stderr


def _codes(data: dict) -> list[str]:
    return [f["rule"] for f in data["findings"]]


def test_example_reports_always_on_dropout_end_to_end() -> None:
    rc, data, err = _scan(str(EXAMPLE))
    assert rc == 1, err
    ta101 = [f for f in data["findings"] if f["rule"] == "TA101"]
    assert len(ta101) == 1
    assert ta101[0]["location"]["line"] == 18 and ta101[0]["module"] == ""
    assert ta101[0]["location"]["file"].endswith("examples/mlp_bn_dropout.py")
    assert "training=self.training" in ta101[0]["fix"]
    assert "examples/mlp_bn_dropout.py:18  TA101" in err  # the terminal summary (stderr with --json -)


def test_select_and_ignore_take_prefixes_and_commas() -> None:
    rc, data, _ = _scan(str(EXAMPLE), "--select", "TA1", "--ignore", "TA101,TA107")
    assert rc == 0 and _codes(data) == ["TA106"]
    rc, data, _ = _scan(str(EXAMPLE), "--select", "TA10", "--select", "TA9", "--ignore", "TA106")
    assert set(_codes(data)) == {"TA101", "TA107"}
    rc, data, _ = _scan(str(EXAMPLE), "--ignore", "TA101", "--fail-on", "warning")
    assert rc == 1 and "TA101" not in _codes(data)


def test_pyproject_config_and_flags_win(tmp_path: Path) -> None:
    model = _copy(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.torchaudit]\nignore = ["TA101"]\nfail-on = "warning"\n')
    rc, data, _ = _scan(str(model))
    assert rc == 1 and "TA101" not in _codes(data) and "TA106" in _codes(data)
    rc, data, _ = _scan(str(model), "--fail-on", "never", "--ignore", "TA107")
    assert rc == 0 and "TA101" in _codes(data) and "TA107" not in _codes(data)


def test_unknown_config_key_is_one_line_exit_2(tmp_path: Path) -> None:
    model = _copy(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.torchaudit]\nfail_on = "error"\nselct = ["TA1"]\n')
    out = invoke_cli("scan", str(model))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "unknown key selct" in out.stderr and "Traceback" not in out.stderr


def test_inline_ignore_silences_one_line(tmp_path: Path) -> None:
    model = _copy(tmp_path)
    text = model.read_text().replace(
        "x = F.dropout(x, 0.1)  # always on: training= defaults to True",
        "x = F.dropout(x, 0.1)  # torchaudit: ignore[TA101,TA702] deliberate MC-dropout",
    )
    model.write_text(text)
    rc, data, _ = _scan(str(model), "--compare", "determinism")
    # the static finding and the determinism comparison's finding on that line are both silenced
    assert "TA101" not in _codes(data) and "TA702" not in _codes(data) and rc == 0
    assert "TA107" in _codes(data)  # the rest of the file is still checked


def test_baseline_ignores_moved_lines_and_fails_on_new_findings(tmp_path: Path) -> None:
    model = _copy(tmp_path)
    base = tmp_path / "baseline.json"
    mode = ("--compare", "mode")  # the baseline holds the mode comparison's findings (TA707) too
    known = len(_scan(str(model), *mode)[1]["findings"])
    rc, data, err = _scan(str(model), *mode, "--write-baseline", str(base))
    assert rc == 0, err
    assert data["findings"] == [] and data["baseline"]["known"] == known >= 6
    # moving code (a new import and a blank line above the dropout) changes no finding
    text = model.read_text().replace("import torch\n", "import math\nimport torch\n\n", 1)
    model.write_text(text)
    rc, data, _ = _scan(str(model), *mode, "--baseline", str(base))
    assert rc == 0 and data["findings"] == []
    # a second always-on dropout is new: the gate fails on it alone
    model.write_text(text.replace("return self.fc2(self.drop(x))", "return self.fc2(F.dropout(self.drop(x), 0.3))"))
    rc, data, _ = _scan(str(model), *mode, "--baseline", str(base))
    assert rc == 1
    new = {(f["rule"], f["location"]["line"]) for f in data["findings"]}
    assert ("TA101", 21) in new and {line for _, line in new} == {21}  # only the new line's findings


def test_missing_baseline_is_exit_2(tmp_path: Path) -> None:
    out = invoke_cli("scan", str(EXAMPLE), "--static-only", "--baseline", str(tmp_path / "none.json"))
    assert out.returncode == 2 and "baseline file not found" in out.stderr


def test_findings_are_deterministic() -> None:
    fixture = Path(__file__).parent / "fixtures" / "rules" / "ta501_factory_device.py"
    first = render_json(torchaudit.scan(str(fixture)))
    second = render_json(torchaudit.scan(str(fixture)))
    assert first == second
    assert json.loads(first)["findings"]


def test_unwritable_baseline_is_exit_2_and_no_traceback(tmp_path: Path) -> None:
    out = invoke_cli("scan", str(EXAMPLE), "--static-only", "--write-baseline", str(tmp_path))  # a folder
    assert out.returncode == 2 and "--write-baseline" in out.stderr and "is a directory" in out.stderr
    assert "Traceback" not in out.stderr
    # a missing folder is made
    out = invoke_cli("scan", str(EXAMPLE), "--static-only", "--write-baseline", str(tmp_path / "missing-dir" / "b.json"))
    assert out.returncode == 0 and (tmp_path / "missing-dir" / "b.json").is_file(), out.stderr


def test_baseline_from_pyproject_is_relative_to_it(tmp_path: Path) -> None:
    model = _copy(tmp_path)
    rc, accepted, err = _scan(str(model), "--write-baseline", str(tmp_path / "accepted.json"))
    assert rc == 0, err
    (tmp_path / "pyproject.toml").write_text('[tool.torchaudit]\nbaseline = "accepted.json"\n')
    rc, data, _ = _scan(str(model), cwd=Path("/"))
    assert rc == 0 and data["findings"] == [] and data["baseline"]["known"] == accepted["baseline"]["known"] >= 4
