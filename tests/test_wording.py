"""How every renderer words paths and comparison statuses (issue 12, items 7, 9 and 10)."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from tests.conftest import ROOT
from tests.report_samples import MLP, mlp_report
from torchaudit.report import (
    ComparisonResult,
    Config,
    Divergence,
    ErrorStats,
    Finding,
    Location,
    NodeComparison,
    Severity,
    Status,
    display_path,
)
from torchaudit.reports import wording as w
from torchaudit.reports.graph_explorer import graph_explorer
from torchaudit.reports.markdown import render_markdown
from torchaudit.reports.terminal import comparison_lines, print_summary
from torchaudit.reports.view import page_view

BERT = os.path.join(os.sep, "opt", "venv", "lib", "python3.11", "site-packages", "transformers", "models", "bert",
                    "modeling_bert.py")


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


# item 7: paths ------------------------------------------------------------------------------

def test_display_path_relative_third_party_and_stdlib():
    assert display_path(str(MLP)) == "examples/mlp_bn_dropout.py"
    assert display_path(BERT) == "transformers/models/bert/modeling_bert.py"
    assert display_path(BERT.replace("site-packages", "dist-packages")) == "transformers/models/bert/modeling_bert.py"
    assert display_path(json.__file__) == "json/__init__.py"
    assert display_path("<string>") == "<string>"
    assert str(Location(BERT, 187)) == "transformers/models/bert/modeling_bert.py:187"
    assert str(Location(str(MLP), 18)) == "examples/mlp_bn_dropout.py:18"
    assert w.where(Location(BERT, 187, 9)) == "transformers/models/bert/modeling_bert.py:187:9"


def test_messages_and_locations_show_short_paths(capsys):
    from torchaudit.rules.dynamic.base import where

    z = ErrorStats()
    d = Divergence("dropout", "", "dropout", z, z, z, location=Location(str(MLP), 18))
    assert where(d) == "node 'dropout' (dropout) in the top-level forward (examples/mlp_bn_dropout.py:18)"
    raised = Finding("TA904", Severity.WARNING, "t", "the model's code raised", module="", location=Location(BERT, 187))
    report = dataclasses.replace(mlp_report(), findings=[raised], comparisons=[])
    print_summary(report)
    out = capsys.readouterr().out
    assert "  transformers/models/bert/modeling_bert.py:187  TA904" in out
    assert "site-packages" not in out
    assert "`transformers/models/bert/modeling_bert.py:187`" in render_markdown(report)
    assert page_view(report).groups[0].findings[0].where == "transformers/models/bert/modeling_bert.py:187"


def test_html_nonfinite_location_is_short():
    nonfinite = dataclasses.replace(_mode("dtype"), reference=Config("cpu", "float64"), first_nonfinite={
        "node": "exp", "module": "", "op": "exp", "in": "candidate",
        "location": {"file": str(MLP), "line": 18, "column": None}})
    view = page_view(dataclasses.replace(mlp_report(), comparisons=[nonfinite])).comparisons[0]
    assert view.nonfinite.endswith("in candidate, location examples/mlp_bn_dropout.py:18")


def test_sarif_keeps_real_artifact_paths():
    from torchaudit.reports.sarif import sarif_dict

    raised = Finding("TA904", Severity.WARNING, "t", "m", module="", location=Location(BERT, 187))
    report = dataclasses.replace(mlp_report(), findings=[raised], comparisons=[])
    location = sarif_dict(report, ROOT)["runs"][0]["results"][0]["locations"][0]
    assert location["physicalLocation"]["artifactLocation"]["uri"].endswith("site-packages/transformers/models/bert/modeling_bert.py")


# item 9: expected differences ---------------------------------------------------------------

def _mode(name: str = "mode") -> ComparisonResult:
    big, z = ErrorStats(1.3, 200.0, 1.0, 0.9), ErrorStats()
    nodes = (NodeComparison("x", None, "placeholder", z, z, z),
             NodeComparison("fc1", "fc1", "linear", z, z, z),
             NodeComparison("bn", "bn", "BatchNorm1d", big, big, z, diverged=True, location=Location(str(MLP), 17)))
    return ComparisonResult(name, Config("cpu", "float32", "eval"), Config("cpu", "float32", "train"), Status.DIVERGED,
                            first_divergence=Divergence("bn", "bn", "BatchNorm1d", big, z, big, location=Location(str(MLP), 17)),
                            nodes=nodes)


def test_an_expected_difference_is_not_worded_as_a_failure():
    report = dataclasses.replace(mlp_report(), comparisons=[_mode(), _mode("custom")])
    assert comparison_lines(report) == ["compare mode: differs as expected at bn (bn, BatchNorm1d)",
                                        "compare custom: differs as expected at bn (bn, BatchNorm1d)"]
    data = report.to_dict()["comparisons"][0]
    assert data["status"] == "diverged" and data["expected_difference"] is True
    md = render_markdown(report)
    assert "mode differs as expected" in md and "**differs as expected**, first at node `bn`" in md
    assert "diverged" not in md
    view = page_view(report).comparisons[0]
    assert (view.status, view.status_css) == ("differs as expected", "expected")
    assert view.divergence is not None and view.divergence.heading == "First difference (expected)"
    assert "first differs, as expected, at node bn" in view.sentence
    graph = graph_explorer(report)
    assert graph is not None and graph.default == "c0"  # the page opens on it, its path drawn in blue, not red
    assert all(c["expected"] for c in json.loads(graph.data)["colourings"])


def test_a_real_divergence_keeps_its_red_wording():
    report = mlp_report()
    assert report.comparisons[0].expected_difference is False
    assert comparison_lines(report)[0] == "compare dtype: diverged at relu (<root>, relu)"
    view = page_view(report).comparisons[0]
    assert (view.status, view.status_css) == ("diverged", "diverged")
    graph = graph_explorer(report)
    assert graph is not None
    dtype = json.loads(graph.data)["colourings"][0]
    assert dtype["expected"] is False and dtype["divergenceName"] == "relu"


# item 10: skipped comparisons are labelled with their configurations ------------------------

def test_skipped_comparisons_name_their_configurations_once():
    import torch
    import torch.nn as nn

    from torchaudit.analyzer.compare.stage import scan_comparisons
    from torchaudit.analyzer.load.inputs import ExampleInputs

    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    results, failures = scan_comparisons(model, None, None, ["device", "mode", "dtype"])
    labels = {c.name: f"{c.reference} vs {c.candidate}" for c in results}
    assert labels == {"device": "cpu:float32:eval vs cuda:float32:eval", "mode": "cpu:float32:eval vs cpu:float32:train",
                      "dtype": "cpu:float64:eval vs cpu:float32:eval"}
    assert all(c.status == Status.SKIPPED and not c.skipped_reason.startswith(f"{c.name}:") for c in results)
    if not torch.cuda.is_available():
        inputs = ExampleInputs((torch.randn(4, 4),), {})
        results, failures = scan_comparisons(model, inputs, None, ["device"])
        (device,) = results
        assert f"{device.reference} vs {device.candidate}" == "cpu:float32:eval vs cuda:float32:eval"
        assert device.skipped_reason.startswith("CUDA is not available")
        assert failures[0].reason.startswith("CUDA is not available")
        sentence = w.comparison_sentence(device)
        assert sentence.startswith("device (cpu:float32:eval vs cuda:float32:eval) was skipped: CUDA is not available")


# item 11: TA106 says how to declare the state where torchaudit built the model --------------

def _ta106(model, tmp_path=None):
    import torchaudit

    report = torchaudit.scan(model, static_only=True, select=["TA106"])
    (finding,) = [f for f in report.findings if f.rule == "TA106"]
    return finding


def test_train_mode_fix_for_a_class_target_names_build_model():
    finding = _ta106(str(MLP))
    assert finding.message.startswith("Classifier(), as torchaudit builds it from the target, is in train mode")
    assert finding.fix.startswith(
        "declare the state it is served in: add `def build_model(): return Classifier().eval()` to examples/mlp_bn_dropout.py")
    assert "call model.eval()" not in finding.fix
    installed = _ta106("torch.nn:Dropout")  # a class from a package: the factory goes in a file of the user's
    assert installed.fix == ("declare the state it is served in: scan a model file of yours with "
                             "`def build_model(): return Dropout().eval()` instead of torch.nn:Dropout")


def test_train_mode_fix_for_a_factory_and_for_a_live_module(tmp_path):
    import torch.nn as nn

    path = tmp_path / "factory_model.py"
    path.write_text("import torch.nn as nn\n\n\ndef build_model():\n    return nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))\n")
    finding = _ta106(str(path))
    assert finding.message.startswith("the model build_model() returns is in train mode")
    assert "from build_model() (e.g. `return model.eval()`)" in finding.fix
    live = _ta106(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)))  # the Python API: the user's own object
    assert live.message.startswith("the model is in train mode")
    assert live.fix == "call model.eval() after building or loading the model for inference"


def test_assert_consistent_message_shows_short_paths():
    from torchaudit.consistency import describe

    nonfinite = dataclasses.replace(_mode("dtype"), first_nonfinite={
        "node": "exp", "module": "", "op": "exp", "in": "candidate", "location": {"file": str(MLP), "line": 18}})
    text = describe(nonfinite)
    assert "at examples/mlp_bn_dropout.py:17:" in text and "only at examples/mlp_bn_dropout.py:18" in text
    assert str(ROOT) not in text
