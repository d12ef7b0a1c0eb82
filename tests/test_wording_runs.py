"""How findings and reports word what the comparisons saw (issue 13, item 13): a node the
reference could not run, integer outputs, the ops of an export graph, and the dropout call
TA101 saw."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

import torchaudit
from tests.conftest import FIXTURES
from tests.dynamic import models as M
from torchaudit.analyzer.trace.graph import GraphNode
from torchaudit.reports import wording as w
from torchaudit.reports.markdown import render_markdown
from torchaudit.reports.view import page_view


def test_a_node_the_reference_could_not_run_is_worded_as_a_failure_with_its_reason():
    report = torchaudit.scan(M.NeedsABatch().eval(), torch.randn(4, 8), compare=["batch"])
    [batch] = report.comparisons
    why = "Expected more than 1 value per channel when training"
    [ta703] = [f for f in report.findings if f.rule == "TA703"]
    assert "each sample alone cannot run node 'bn'" in ta703.message and why in ta703.message
    assert "cosine" not in ta703.message and "max rel" not in ta703.message
    assert why in ta703.evidence["could_not_run"] and "local" not in ta703.evidence

    sentence = w.comparison_sentence(batch)
    assert "could not be compared at node bn" in sentence and why in sentence
    assert "its own error is 0" not in sentence and sentence.count(why) == 1  # the note is not repeated
    markdown = render_markdown(report)
    assert "own error 0" not in markdown and why in markdown
    [view] = page_view(report).comparisons
    assert view.divergence is not None and {cell for row in view.divergence.rows for cell in row.cells} == {"n/a"}
    assert [(r.total, r.local) for r in view.top_nodes if r.node == "bn"] == [("n/a", "n/a")]


class Quantizes(nn.Module):
    """An int64 output: in float32 the rounding before ``long()`` moves some values by one."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.fc(x) * 1e6).long()


def test_an_integer_node_is_reported_by_how_many_elements_differ():
    torch.manual_seed(0)
    report = torchaudit.scan(Quantizes().eval(), torch.randn(16, 64), compare=["dtype"])
    [ta704] = [f for f in report.findings if f.rule == "TA704"]
    assert ta704.node == "long"
    assert " of 1024 int64 elements differ (by up to 1)" in ta704.message, ta704.message
    assert "cosine" not in ta704.message and "max rel" not in ta704.message
    [view] = page_view(report).comparisons
    assert view.divergence is not None
    local = view.divergence.rows[0].cells  # max abs, max rel, mismatch, cosine
    assert local[0] == "1" and local[1] == local[3] == "n/a"
    assert "cosine" not in view.output and "max_rel" not in view.output


def test_export_ops_are_named_without_their_overload():
    node = GraphNode("empty", "call_function", "aten.empty.memory_format", "", None)
    assert node.op_name == "aten.empty"
    assert GraphNode("add", "call_function", "_operator.add", "", None).op_name == "add"
    report = torchaudit.scan(str(FIXTURES / "rules" / "ta101_export_graph.py"), compare=["mode"])
    assert report.graph is not None and report.graph.tracer == "export"
    ta707 = [f for f in report.findings if f.rule == "TA707"]
    assert ta707 and all("(aten.dropout)" in f.message and "(default)" not in f.message for f in ta707)
    assert {n.op_name for n in report.graph_outline if n.op == "call_function"} >= {"aten.dropout", "aten.linear"}


def test_ta101_names_the_dropout_call_it_saw(tmp_path: Path):
    path = tmp_path / "built_in_forward.py"
    path.write_text(
        "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\n"
        "class Net(nn.Module):\n"
        "    def forward(self, x):\n"
        "        x = nn.Dropout(0.2)(x)\n"
        "        return F.dropout(x, 0.1)\n\n\n"
        "def build_model():\n    return Net().eval()\n\n\n"
        "def example_inputs():\n    return torch.randn(4, 8)\n"
    )
    report = torchaudit.scan(str(path), static_only=True)
    by_line = {f.location.line: f for f in report.findings if f.rule == "TA101" and f.location is not None}
    assert set(by_line) == {8, 9}
    assert by_line[8].message.startswith("nn.Dropout(...)(x) builds a new nn.Dropout in forward")
    assert "F.dropout" not in by_line[8].message and "__init__" in by_line[8].fix
    assert by_line[9].message.startswith("F.dropout is called without training=self.training")
