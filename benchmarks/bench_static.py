"""Static scan scaling: trace + every rule on synthetic models of 10, 100 and 1,000 blocks.

Prints the time per graph node for each size and the ratio of the slowest to the fastest
per-node time, all measured in this one run (these machines are noisy: compare ratios, not
seconds). Target (DESIGN.md, Performance): the ratio stays within 1.5x.

    python benchmarks/bench_static.py [--blocks 10 100 1000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import torchaudit

TARGET = 1.5


class Block(nn.Module):
    """A pre-norm residual MLP block with the layers rules look at (norm, dropout)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 2 * width)
        self.fc2 = nn.Linear(2 * width, width)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.fc2(F.gelu(self.fc1(self.norm(x)))))


class Stack(nn.Module):
    def __init__(self, blocks: int, width: int = 16) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(Block(width) for _ in range(blocks)))
        self.head = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


def _static_kwargs() -> dict:
    """Keep the scan static where the API has a dynamic stage (static_only / compare)."""
    params = inspect.signature(torchaudit.scan).parameters
    if "static_only" in params:
        return {"static_only": True}
    if "compare" in params:
        return {"compare": []}
    return {}


def measure(blocks: int, repeat: int) -> dict:
    model = Stack(blocks).eval()
    x = torch.randn(2, 16)
    kwargs = _static_kwargs()
    best = float("inf")
    nodes = 0
    runs, spent = 0, 0.0
    while runs < repeat or spent < 2.0:  # small models: more runs, so noise does not decide
        start = time.perf_counter()
        report = torchaudit.scan(model, x, **kwargs)
        took = time.perf_counter() - start
        best, runs, spent = min(best, took), runs + 1, spent + took
        nodes = report.graph.nodes
    return {"blocks": blocks, "nodes": nodes, "seconds": best, "us_per_node": best / nodes * 1e6}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--repeat", type=int, default=3, help="at least this many runs per size (and at least 2 s of them); the fastest counts")
    ap.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    args = ap.parse_args()
    torchaudit.scan(Stack(2).eval(), torch.randn(2, 16), **_static_kwargs())  # warm up imports and rules
    rows = [measure(b, args.repeat) for b in args.blocks]
    per_node = [r["us_per_node"] for r in rows]
    ratio = max(per_node) / min(per_node)
    result = {"rows": rows, "per_node_ratio": ratio, "target": TARGET, "ok": ratio <= TARGET}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'blocks':>7} {'nodes':>7} {'seconds':>9} {'us/node':>9}")
        for r in rows:
            print(f"{r['blocks']:>7} {r['nodes']:>7} {r['seconds']:>9.3f} {r['us_per_node']:>9.1f}")
        print(f"time per node, slowest / fastest: {ratio:.2f}x (target <= {TARGET}x): {'OK' if result['ok'] else 'OVER'}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
