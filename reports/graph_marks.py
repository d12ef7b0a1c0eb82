"""What the graph view colours its boxes by: each comparison's worst local error per box and
its path to the first divergence, and the worst finding per box.

A box's error is the worst local (own) error of the nodes inside it, as a multiple of the
tolerance the comparison's status uses (``torchaudit.reports.tolerance``): above 1 a node has
elements outside tolerance. The inputs and the output are not judged by the engine and colour
nothing. The path to the first divergence is every node that lies on a data-flow path from an
input to the divergent node: its ancestors that an input reaches (weights and constants that
only feed it are left out), and the node itself.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

from torchaudit.report import ComparisonResult, Report
from torchaudit.reports import wording as w
from torchaudit.reports.graph_view import ModuleTree
from torchaudit.reports.tolerance import has_tolerance, local_ratio


@dataclass(frozen=True)
class Colouring:
    """One comparison's marks on the tree."""

    name: str
    label: str  # "dtype (cpu:float64:eval vs cpu:float32:eval): diverged"
    worst: tuple[float | None, ...]  # per item: worst local error / tolerance inside it; None: no node compared
    path: tuple[int, ...]  # graph nodes from the inputs to the first divergence, in execution order
    divergence: int | None  # the first divergent node
    expected: bool  # eval against train: the path is information, not a fault


def worst_local(tree: ModuleTree, c: ComparisonResult) -> tuple[float | None, ...]:
    """Per item, the worst local error over tolerance of the compared nodes inside it (all
    ``None`` for a comparison that recorded no tolerance)."""
    worst: list[float | None] = [None] * len(tree.items)
    if not has_tolerance(c):
        return tuple(worst)
    for n in c.nodes:
        i = tree.index.get(n.node)
        if i is None or tree.items[i].kind != "op":  # the engine judges no input or output
            continue
        ratio = local_ratio(n, c)
        for j in (i, *tree.ancestors(i)):
            current = worst[j]
            if current is None or ratio > current:
                worst[j] = ratio
    return tuple(worst)


def divergence_path(tree: ModuleTree, node: int) -> tuple[int, ...]:
    """The graph nodes on a data-flow path from an input to ``node``, ``node`` included."""
    ancestors = _reach([node], lambda i: tree.inputs[i])
    users: dict[int, list[int]] = {}
    for i in ancestors:
        for j in tree.inputs[i]:
            users.setdefault(j, []).append(i)
    starts = [i for i in ancestors if tree.items[i].kind == "input"]
    return tuple(sorted(_reach(starts, lambda i: users.get(i, ())) | {node}))


def _reach(starts: list[int], step: Callable[[int], Iterable[int]]) -> set[int]:
    seen = set(starts)
    queue = deque(starts)
    while queue:
        for j in step(queue.popleft()):
            if j not in seen:
                seen.add(j)
                queue.append(j)
    return seen


def colourings(report: Report, tree: ModuleTree) -> tuple[Colouring, ...]:
    """One per comparison with per-node records, in the report's order."""
    out = []
    for c in report.comparisons:
        if not c.nodes:
            continue
        d = c.first_divergence
        divergence = tree.index.get(d.node) if d is not None else None
        out.append(Colouring(
            name=c.name,
            label=f"{c.name} ({c.reference} vs {c.candidate}): {w.status_label(c)}",
            worst=worst_local(tree, c),
            path=divergence_path(tree, divergence) if divergence is not None else (),
            divergence=divergence,
            expected=c.expected_difference,
        ))
    return tuple(out)


def finding_marks(report: Report, tree: ModuleTree) -> tuple[tuple[int, ...], dict[int, tuple[str, ...]]]:
    """Per item the worst severity rank (0 none, 1 info, 2 warning, 3 error) of the findings
    inside it, and the rule codes of those findings (items with none left out). A model-wide
    finding (no module, or the root with no node) marks no box."""
    rank = [0] * len(tree.items)
    codes: dict[int, set[str]] = {}
    for f in report.findings:
        if f.module is None or (f.module == "" and f.node is None):
            continue
        at = tree.index.get(f.node) if f.node else None
        if at is None:
            at = _module_item(tree, f.module)
        if at is None:
            continue
        for j in (at, *tree.ancestors(at)):
            rank[j] = max(rank[j], f.severity.rank)
            codes.setdefault(j, set()).add(f.rule)
    return tuple(rank), {i: tuple(sorted(c)) for i, c in codes.items()}


def _module_item(tree: ModuleTree, module: str) -> int | None:
    """The item of ``module``, else of its nearest enclosing module that has one."""
    path = module
    while path:
        if path in tree.modules:
            return tree.modules[path]
        path = path.rpartition(".")[0]
    return None
