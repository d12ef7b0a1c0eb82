"""The engine's shortcuts (the scan's graph rebound, unchecked traces, shared casts, skipped
shadows) give what the long way gives, and fall back where they must."""

import operator

import pytest
import torch
import torch.fx
import torch.nn as nn

import torchaudit
from tests.dynamic import models as M
from tests.test_tracing import _TracesButFailsToRun
from torchaudit.analyzer.compare.comparisons import Options
from torchaudit.analyzer.compare.stage import run_comparisons
from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.compare.sides import _mutates
from torchaudit.analyzer.trace.tracing import trace_model

ALL = ["dtype", "mode", "determinism", "batch"]  # reload makes a fresh instance from a target: not here


class WithConstant(nn.Module):
    """fx stores ``torch.tensor(2.0)`` on its root as ``_tensor_constant0``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        return self.fc(x) * torch.tensor(2.0)


@pytest.mark.parametrize("cls", [M.LinearBN, WithConstant, M.AlwaysDropout])
def test_comparisons_on_the_scans_graph_equal_those_on_their_own_traces(cls):
    torch.manual_seed(0)
    model = cls().eval()
    x = ExampleInputs((torch.randn(8, 6),))
    scanned = trace_model(model, x)
    reused, _ = run_comparisons(model, x, ALL, Options(graph=scanned))
    traced, _ = run_comparisons(model, x, ALL, Options())
    assert [r.status.value for r in reused] == [r.status.value for r in traced]
    assert all(r.status.value in ("matched", "diverged") for r in reused), [r.skipped_reason for r in reused]
    assert [r.to_dict() for r in reused] == [r.to_dict() for r in traced]


def test_a_graph_that_traces_but_does_not_run_is_compared_through_the_next_tracer():
    report = torchaudit.scan(_TracesButFailsToRun(), example_inputs=torch.randn(2, 4), compare=["determinism", "dtype"])
    assert [(c.name, c.status.value) for c in report.comparisons] == [("determinism", "matched"), ("dtype", "matched")]
    assert not [f for f in report.findings if f.rule == "TA903"]


class ViewThenInPlace(nn.Module):
    """A value is viewed, then changed in place: the view sees the change."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        h = self.fc(x)
        flat = h.view(-1)
        h.mul_(3.0)
        return flat.sum() + h.sum()


def test_an_in_place_op_after_a_view_is_no_false_alarm():
    torch.manual_seed(0)
    model = ViewThenInPlace().eval()
    x = torch.randn(8, 6)
    report = torchaudit.scan(model, example_inputs=x, compare=["dtype", "determinism"])
    assert [(c.name, c.status.value) for c in report.comparisons] == [("dtype", "matched"), ("determinism", "matched")]
    sums = [n for n in report.comparisons[0].nodes if n.op == "sum"]
    assert len(sums) == 2 and all(n.local.max_abs < 1e-4 for n in sums)


def test_skipped_shadows_keep_the_error_local_where_it_starts_and_inherited_after():
    torch.manual_seed(0)
    ref = M.LinearBN().eval()
    cand = M.LinearBN().eval()
    cand.load_state_dict(ref.state_dict())
    with torch.no_grad():
        cand.bn.weight[2] += 0.5
    result = torchaudit.compare(ref, cand, torch.randn(8, 6))
    nodes = {n.node: n for n in result.nodes}
    assert result.first_divergence.module == "bn"
    assert nodes["fc"].total.max_abs == 0.0 and nodes["fc"].local.max_abs == 0.0
    assert nodes["bn"].local.max_abs > 0.1 and nodes["bn"].inherited.max_abs == 0.0
    after = nodes["out"]
    assert after.local.max_abs == 0.0 and after.inherited.max_abs > 0.01 and not after.diverged


def test_operator_in_place_calls_count_as_mutating():
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    iadd = graph.call_function(operator.iadd, (x, 1))
    setitem = graph.call_function(operator.setitem, (x, 0, 1.0))
    add = graph.call_function(operator.add, (x, 1))
    graph.output((iadd, setitem, add))
    gm = torch.fx.GraphModule(nn.Module(), graph)
    assert [_mutates(n, gm) for n in (iadd, setitem, add)] == [True, True, False]
