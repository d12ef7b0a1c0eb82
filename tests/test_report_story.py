"""One Report, several renderers: they tell the same story (verdict, counts, blamed nodes)."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import ROOT
from tests.report_samples import mlp_report
from torchaudit.reports.html import render_html
from torchaudit.reports.json_report import render_json
from torchaudit.reports.markdown import render_markdown
from torchaudit.reports.sarif import sarif_dict
from torchaudit.reports.terminal import print_summary


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_every_renderer_tells_the_same_story(capsys):
    report = mlp_report()
    print_summary(report)
    terminal = capsys.readouterr().out
    data = json.loads(render_json(report))
    page = re.sub(r"<[^>]+>", " ", render_html(report))
    md = render_markdown(report)
    sarif = sarif_dict(report)["runs"][0]

    assert data["summary"]["verdict"] == "fail" and sarif["properties"]["verdict"] == "fail"
    assert "FAIL" in terminal and "FAIL" in page and "FAIL" in md
    counts = (data["summary"]["errors"], data["summary"]["warnings"], data["summary"]["infos"])
    assert counts == (1, 1, 1)
    assert data["graph_view"]["total_nodes"] == data["graph"]["nodes"]  # the drawn graph is in the JSON too
    assert page.count(f"{data['graph']['nodes']} graph nodes, opened on") == 1
    assert "1 error, 1 warning, 1 info (fail on error)" in page
    assert "| 1 | 1 | 1 | error |" in md
    assert [r["ruleId"] for r in sarif["results"]] == [f["rule"] for f in data["findings"]]
    for c in data["comparisons"]:
        node = (c["first_divergence"] or {}).get("node")
        if node:
            assert f"compare {c['name']}: diverged at {node}" in terminal
            assert f"{c['name']} (" in page and f"node {node} " in page
            assert f"first at node `{node}`" in md
        else:
            assert f"compare {c['name']}: {c['status']}" in terminal and c["status"] in md
