"""Realistic reports for the renderer tests: a real scan, plus findings and comparisons as the
rules and the dynamic stage produce them (built here, so the renderers are tested before and
independently of those stages)."""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import torch
import torch.nn as nn

from torchaudit.analyzer.load.meta import SKIP_REASONS
from torchaudit.report import (
    ComparisonResult,
    Config,
    Divergence,
    ErrorStats,
    Finding,
    Location,
    NodeComparison,
    Report,
    Severity,
    StateDifference,
    Status,
)

ROOT = Path(__file__).resolve().parents[1]
MLP = ROOT / "examples" / "mlp_bn_dropout.py"


def _stats(x: float) -> ErrorStats:
    return ErrorStats(max_abs=x, max_rel=x * 3, mismatch_fraction=0.25 if x > 1e-5 else 0.0, cosine=1 - x)


def mlp_findings(path: Path = MLP) -> list[Finding]:
    return [
        Finding("TA101", Severity.ERROR, "Functional dropout without training=",
                "F.dropout is called without training=, so it stays on after eval()",
                module="", node="dropout", location=Location(str(path), 18, 13),
                evidence={"call": "F.dropout"}, fix="pass training=self.training"),
        Finding("TA106", Severity.WARNING, "Model in train mode with mode-sensitive layers",
                "the model as built is in train mode and contains BatchNorm1d and Dropout",
                module="bn", fix="call model.eval() before inference"),
        Finding("TA107", Severity.INFO, "Mode-sensitive layers", "bn (BatchNorm1d), drop (Dropout)",
                module="drop", location=Location(str(path), 13, 9), fix="nothing to fix; see TA101 and TA106"),
    ]


def dtype_comparison(n: int = 6, diverge_at: int = 3) -> ComparisonResult:
    names = ["x", "fc1", "bn", "relu", "dropout", "fc2"] + [f"node_{i}" for i in range(6, n)]
    nodes = []
    for i in range(n):
        local = 2e-3 if i == diverge_at else (0.0 if i == 0 else 1e-8 * (i % 5 + 1))
        total = 0.0 if i == 0 else (3e-3 * (1 + i / n) if i >= diverge_at else 2e-8 * i)
        nodes.append(NodeComparison(names[i], names[i] if i in (1, 2, 5) else "", "linear" if i in (1, 5) else "op",
                                    _stats(total), _stats(local), _stats(max(total - local, 0.0)),
                                    diverged=i == diverge_at, location=Location(str(MLP), 17 + (i > 2))))
    d = nodes[diverge_at]
    return ComparisonResult(
        "dtype", Config("cpu", "float64", "eval"), Config("cpu", "float32", "eval"), Status.DIVERGED,
        tolerance={"atol": 1e-05, "rtol": 1.3e-06},
        output={"max_abs": 4.5e-3, "max_rel": 2e-2, "cosine": 0.9999, "close": False},
        first_divergence=Divergence(d.node, d.module, "relu", d.local, d.inherited, d.total,
                                    location=Location(str(MLP), 17, 13)),
        nodes=tuple(nodes),
    )


def reload_comparison() -> ComparisonResult:
    z = ErrorStats()
    big = _stats(0.41)
    nodes = (
        NodeComparison("x", None, "placeholder", z, z, z),
        NodeComparison("fc1", "fc1", "linear", z, z, z),
        NodeComparison("bn", "bn", "batch_norm", big, big, z, diverged=True),
        NodeComparison("fc2", "fc2", "linear", _stats(0.9), _stats(1e-7), _stats(0.9)),
    )
    return ComparisonResult(
        "reload", Config("cpu", "float32", "eval"), Config("cpu", "float32", "eval"), Status.DIVERGED,
        tolerance={"atol": 1e-05, "rtol": 1.3e-06},
        first_divergence=Divergence("bn", "bn", "batch_norm", big, z, big, location=Location(str(MLP), 17, 20)),
        state_diff=(StateDifference("head.calls", "python_attribute", "20", "0"),
                    StateDifference("bn.running_mean", "buffer", "tensor(32) mean 0.12", "tensor(32) mean 0.0")),
        nodes=nodes,
    )


def skipped_comparison() -> ComparisonResult:
    return ComparisonResult("device", Config("cpu"), Config("cuda"), Status.SKIPPED,
                            skipped_reason="CUDA is not available on this machine")


@functools.lru_cache(maxsize=1)
def _mlp_scan() -> Report:
    """The real static scan of the bundled MLP, once per test session: the samples replace its
    findings and comparisons, and no renderer test changes a Report it is given."""
    import torchaudit

    return torchaudit.scan(str(MLP), static_only=True)


def mlp_report(command: str = "torchaudit scan examples/mlp_bn_dropout.py --html report.html") -> Report:
    """A real scan of the bundled MLP, with findings and a diverging comparison added."""
    report = _mlp_scan()
    findings = mlp_findings() + [f for f in report.findings if f.rule.startswith("TA9")]
    # the comparisons below stand in for the dynamic stage: its rules count as run, not skipped
    skipped = {code: why for code, why in report.extras.get("skipped_rules", {}).items() if why != SKIP_REASONS["dynamic"]}
    extras = {k: v for k, v in report.extras.items() if k != "skipped_rules"} | ({"skipped_rules": skipped} if skipped else {})
    return dataclasses.replace(report, findings=findings, command=command, extras=extras,
                               comparisons=[dtype_comparison(), reload_comparison(), skipped_comparison()])


def nan_stats() -> ErrorStats:
    return ErrorStats(max_abs=math.nan, max_rel=math.inf, mismatch_fraction=1.0, cosine=math.nan)


# a deep model for the graph view: stages of blocks, 5 nodes a block -----------------------------

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


def net_report(stages: int, blocks: int, diverge_at: tuple[int, int] = (0, 0)) -> Report:
    """A static scan of ``Net(stages, blocks)`` with two comparisons over every node, as the dynamic
    stage records them: ``dtype`` first diverging at node ``diverge_at[0]``, ``reload`` at
    ``diverge_at[1]``; every other node's local error well inside tolerance, some above 0.1 of it."""
    import torchaudit

    report = torchaudit.scan(Net(stages, blocks), torch.randn(2, 8), static_only=True)
    comparisons = [node_comparison(report, name, at) for name, at in zip(("dtype", "reload"), diverge_at)]
    return dataclasses.replace(report, comparisons=comparisons)


def node_comparison(report: Report, name: str, diverge_at: int) -> ComparisonResult:
    rows = []
    for i, n in enumerate(report.graph_outline):
        local = _stats(2e-3) if i == diverge_at else ErrorStats(1e-7 * (i % 13), 1e-7 * (i % 11))
        rows.append(NodeComparison(n.name, n.module, n.op_name, _stats(1e-6 * (i % 7)), local, ErrorStats(),
                                   diverged=i == diverge_at))
    d = rows[diverge_at]
    return ComparisonResult(
        name, Config("cpu", "float64", "eval"), Config("cpu", "float32", "eval"), Status.DIVERGED,
        tolerance={"atol": 1e-05, "rtol": 1.3e-06},
        first_divergence=Divergence(d.node, d.module, d.op, d.local, d.inherited, d.total), nodes=tuple(rows),
    )
