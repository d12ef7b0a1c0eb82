"""``--meta`` on small models: every rule that does not need tensor values finds what it finds
without --meta, the user's model is left alone, and skipped rules are named with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import torchaudit
from tests.conftest import invoke_cli
from torchaudit.rules.engine import load_rules

RULE_FIXTURES = sorted((Path(__file__).parent / "fixtures" / "rules").glob("*.py"))


def _seen(report: torchaudit.Report) -> set[tuple]:
    return {(f.rule, f.module, f.location.line if f.location else None) for f in report.findings}


@pytest.mark.parametrize("path", RULE_FIXTURES, ids=[p.stem for p in RULE_FIXTURES])
def test_meta_scan_finds_what_a_full_scan_finds(path: Path) -> None:
    full = torchaudit.scan(str(path), static_only=True)  # the rules compared below run without comparisons
    meta = torchaudit.scan(str(path), meta=True)
    needs_values = {code for code, cls in load_rules().items() if cls.needs & {"values", "devices", "dynamic"}}  # --meta runs no comparison
    assert not [f for f in meta.findings if f.rule == "TA902"], [f.message for f in meta.findings if f.rule == "TA902"]
    assert _seen(meta) == {s for s in _seen(full) if s[0] not in needs_values}
    assert meta.graph.tracer == full.graph.tracer and meta.graph.nodes == full.graph.nodes
    assert meta.graph.parameters == full.graph.parameters


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.bn = nn.BatchNorm1d(4, momentum=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(x))


def test_meta_scan_of_a_live_model_leaves_it_alone() -> None:
    model = Small().train()
    params = {k: v.clone() for k, v in model.state_dict().items()}
    objects = {k: id(v) for k, v in model.named_parameters()}
    report = torchaudit.scan(model, torch.randn(3, 8), meta=True)
    assert report.extras["meta"]["values"] is False
    assert {f.rule for f in report.findings} >= {"TA105", "TA106"}  # tree rules still run
    assert all(torch.equal(model.state_dict()[k], v) for k, v in params.items())
    assert {k: id(v) for k, v in model.named_parameters()} == objects and model.training
    assert not any(type(p).__name__ == "FakeTensor" for p in model.parameters())


def test_a_160gb_model_scans_with_meta(tmp_path: Path) -> None:
    out = invoke_cli("scan", "tests/fixtures/meta/huge_linear.py", "--meta", "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["graph"]["parameters"] == 200_000 * 200_000 + 3 * 200_000
    assert data["graph"]["tracer"] == "fx" and data["graph"]["nodes"] == 5
    assert "meta scan" in out.stdout


def test_meta_skips_value_rules_and_says_why(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from tests.fixtures.meta import nan_model

    state = nan_model.Net().state_dict()
    state["fc.weight"][0, 0] = float("nan")
    ckpt = tmp_path / "nan.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(ckpt))
    target = "tests/fixtures/meta/nan_model.py"
    full = invoke_cli("scan", target, "--checkpoint", str(ckpt), "--static-only", "--json", str(tmp_path / "full.json"))
    assert "TA307" in {f["rule"] for f in json.loads((tmp_path / "full.json").read_text())["findings"]}, full.stderr
    meta = invoke_cli("scan", target, "--meta", "--checkpoint", str(ckpt), "--json", str(tmp_path / "meta.json"))
    data = json.loads((tmp_path / "meta.json").read_text())
    assert "TA307" not in {f["rule"] for f in data["findings"]}
    assert data["skipped_rules"]["TA307"] == "needs tensor values, which --meta does not materialize"
    lines = meta.stdout.strip().splitlines()
    skipped = lines[next(i for i, line in enumerate(lines) if line.startswith("skipped ")):]
    assert any("TA307" in line and "needs tensor values" in line for line in skipped), meta.stdout


def test_meta_on_a_value_dependent_forward_still_runs_the_other_rules(tmp_path: Path) -> None:
    # forward branches on `h.mean() > 0.5`: without values no tracer can follow it
    out = invoke_cli("scan", "examples/data_dependent.py", "--meta", "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr[-2000:]  # not exit 2: the inputs are fine
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["graph"]["tracer"] == "none"
    ta901 = [f for f in data["findings"] if f["rule"] == "TA901"]
    assert ta901 and "DataDependentOutputException" in ta901[0]["message"]
    assert {"TA106", "TA107"} <= {f["rule"] for f in data["findings"]}  # module-tree rules ran
    assert data["meta"]["comparisons"] == "not run: they need tensor values"
