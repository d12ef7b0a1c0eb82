"""The graph view: the traced graph collapsed by module, so a large model stays drawable.

The view reads only the traced graph, so the scans here are static (no comparisons)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import torchaudit
from torchaudit.reports.graph_view import DEFAULT_CAP, graph_view_of
from torchaudit.reports.html import render_html


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.norm(self.fc(x))) * 0.5


class Stage(nn.Module):
    def __init__(self, blocks: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[Block() for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class Net(nn.Module):
    def __init__(self, stages: int, blocks: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList(Stage(blocks) for _ in range(stages))
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


def test_small_model_is_drawn_module_by_module():
    report = torchaudit.scan(Net(2, 2), torch.randn(3, 8), static_only=True)
    view = graph_view_of(report)
    labels = [g.label for g in view.groups]
    assert not view.collapsed
    assert "stages.0.blocks.1.fc" in labels and "stages.1.blocks.0.norm" in labels and "head" in labels
    assert labels[0] == "(inputs)" and labels[-1] == "(output)"
    assert sum(g.nodes for g in view.groups) == view.total_nodes == report.graph.nodes
    ids = {g.id for g in view.groups}
    assert all(a in ids and b in ids and n > 0 for a, b, n in view.edges)
    first = {g.label: g.first for g in view.groups}
    assert first["stages.0.blocks.0.fc"] < first["stages.1.blocks.0.fc"] < first["head"]


@pytest.mark.slow  # traces and renders a 5,000-node graph
def test_5000_node_graph_collapses_to_a_readable_drawing():
    report = torchaudit.scan(Net(10, 100), torch.randn(2, 8), static_only=True)  # 1,000 blocks of 5 nodes
    view = graph_view_of(report)
    assert view.total_nodes == report.graph.nodes > 5000
    assert view.collapsed and len(view.groups) <= DEFAULT_CAP
    assert sum(g.nodes for g in view.groups) == view.total_nodes
    labels = {g.label for g in view.groups}
    assert {f"stages.{i}" for i in range(10)} <= labels or {f"stages.{i}.blocks" for i in range(10)} <= labels
    page = render_html(report)
    assert page.count("<rect") == len(view.groups)
    assert len(page) < 150_000
    assert f"{view.total_nodes:,} graph nodes drawn as {len(view.groups)} module boxes" in page


def test_runs_follow_execution_order_and_long_sequentials_become_ranges():
    report = torchaudit.scan(nn.Sequential(*[Block() for _ in range(300)]), torch.randn(2, 8), static_only=True)
    view = graph_view_of(report)
    labels = [g.label for g in view.groups]
    assert len(labels) <= DEFAULT_CAP and view.collapsed
    ranges = [g for g in view.groups if g.kind == "range"]
    assert ranges[0].label.startswith("0 \u2026 ") and ranges[-1].label.endswith(" \u2026 299")
    assert sum(len(g.members) for g in ranges) == 300
    assert [g.first for g in view.groups] == sorted(g.first for g in view.groups)
    # a module whose own ops run around its children gets one box per run, in order
    block = graph_view_of(torchaudit.scan(Block(), torch.randn(2, 8), static_only=True))
    assert [g.label for g in block.groups] == ["(inputs)", "fc", "norm", "(root)", "(output)"]
    from tests.conftest import EXAMPLES

    attention = graph_view_of(torchaudit.scan(str(EXAMPLES / "transformer_block.py"), static_only=True))
    assert [g.label for g in attention.groups] == [
        "(inputs)", "norm1", "attn (1/3)", "attn.qkv", "attn (2/3)", "attn.drop", "attn (3/3)", "attn.proj",
        "(root 1/2)", "norm2", "mlp.0", "mlp.1", "mlp.2", "mlp.3", "(root 2/2)", "(output)",
    ]
