"""How every renderer words paths (issue 12, item 7)."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from tests.conftest import ROOT
from tests.report_samples import MLP, mlp_report
from torchaudit.report import (
    Divergence,
    ErrorStats,
    Finding,
    Location,
    Severity,
    display_path,
)
from torchaudit.reports import wording as w
from torchaudit.reports.markdown import render_markdown
from torchaudit.reports.terminal import print_summary
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


def test_sarif_keeps_real_artifact_paths():
    from torchaudit.reports.sarif import sarif_dict

    raised = Finding("TA904", Severity.WARNING, "t", "m", module="", location=Location(BERT, 187))
    report = dataclasses.replace(mlp_report(), findings=[raised], comparisons=[])
    location = sarif_dict(report, ROOT)["runs"][0]["results"][0]["locations"][0]
    assert location["physicalLocation"]["artifactLocation"]["uri"].endswith("site-packages/transformers/models/bert/modeling_bert.py")
