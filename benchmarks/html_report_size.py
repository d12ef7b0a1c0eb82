"""Size and render time of the HTML report as the traced graph grows (prints, asserts nothing).

    python benchmarks/html_report_size.py
"""

from __future__ import annotations

import dataclasses
import time

import torch
import torch.nn as nn

import torchaudit
from torchaudit.report import ComparisonResult, Config, ErrorStats, NodeComparison, Status
from torchaudit.reports.graph_view import graph_view_of
from torchaudit.reports.html import render_html


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.norm(self.fc(x))) * 0.5


def main() -> None:
    print(f"{'blocks':>7} {'nodes':>7} {'boxes':>6} {'html KiB':>9} {'render s':>9}")
    for blocks in (10, 100, 1000):
        model = nn.Sequential(*[nn.Sequential(*[Block() for _ in range(10)]) for _ in range(blocks // 10)])
        report = torchaudit.scan(model, torch.randn(2, 8))
        # a comparison row for every node, as the dynamic stage fills it
        rows = tuple(NodeComparison(f"n{i}", "", "op", ErrorStats(1e-6 * (i % 7)), ErrorStats(1e-7), ErrorStats())
                     for i in range(report.graph.nodes))
        report = dataclasses.replace(report, comparisons=[ComparisonResult(
            "dtype", Config(dtype="float64"), Config(), Status.MATCHED, tolerance={"atol": 1e-5}, nodes=rows)])
        start = time.perf_counter()
        page = render_html(report)
        elapsed = time.perf_counter() - start
        view = graph_view_of(report)
        print(f"{blocks:>7} {view.total_nodes:>7} {len(view.groups):>6} {len(page) / 1024:>9.1f} {elapsed:>9.3f}")


if __name__ == "__main__":
    main()
