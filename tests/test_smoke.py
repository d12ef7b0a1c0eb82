import json

import pytest

from tests.conftest import run_cli


@pytest.mark.slow  # the installed command in a fresh interpreter, end to end
def test_version_and_scan_json(tmp_path):
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("torchaudit ")
    report = tmp_path / "r.json"
    res = run_cli("scan", "examples/mlp_bn_dropout.py", "--static-only", "--json", str(report))
    assert res.returncode in (0, 1), res.stderr
    data = json.loads(report.read_text())
    assert data["schema_version"] == 1
    assert data["graph"]["tracer"] == "fx"
    assert data["target"]["model_class"] == "Classifier"
