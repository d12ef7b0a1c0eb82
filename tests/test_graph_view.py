"""The graph view (issue 12, item 14): the traced graph as a module tree a reviewer opens box by
box, each box marked with a comparison's worst local error and the path to the first divergence.

The tree reads only the traced graph, so the scans here are static (no comparisons); the marks
are checked on outlines and comparisons built here."""

from __future__ import annotations

import pytest
import torch

import torchaudit
from tests.report_samples import Net, dtype_comparison
from torchaudit.report import ComparisonResult, ErrorStats, Finding, NodeComparison, OutlineNode, Severity, Status
from torchaudit.reports.graph_explorer import derived_name, explorer_data, graph_explorer
from torchaudit.reports.graph_marks import colourings, divergence_path, finding_marks, worst_local
from torchaudit.reports.graph_view import MAX_CHILDREN, ModuleTree, graph_view_of, module_tree
from torchaudit.reports.html import render_html
from torchaudit.reports.tolerance import ABOVE


def labels(tree: ModuleTree, parent: int = -1) -> list[str]:
    return [tree.items[i].label for i in (tree.top if parent < 0 else tree.children.get(parent, ()))]


def item(tree: ModuleTree, name: str) -> int:
    return next(i for i, it in enumerate(tree.items) if it.name == name and it.kind == "module")


def check_shape(tree: ModuleTree) -> None:
    """Every graph node is one item, each level in execution order and at most MAX_CHILDREN wide,
    each box's node count the sum of its children's."""
    assert [tree.items[i].kind in ("input", "op", "output") for i in range(tree.total_nodes)] == [True] * tree.total_nodes
    assert all(it.kind in ("module", "ops", "range") for it in tree.items[tree.total_nodes:])
    for parent, kids in tree.children.items():
        assert len(kids) <= MAX_CHILDREN, tree.items[parent].name
        assert [tree.items[k].first for k in kids] == sorted(tree.items[k].first for k in kids)
        if parent >= 0:
            assert tree.items[parent].nodes == sum(tree.items[k].nodes for k in kids)
            assert tree.items[parent].first == tree.items[kids[0]].first
    assert sum(tree.items[i].nodes for i in tree.top) == tree.total_nodes


def test_tree_opens_on_top_level_blocks_one_box_per_module():
    report = torchaudit.scan(Net(2, 2), torch.randn(3, 8), static_only=True)
    tree = graph_view_of(report)
    assert tree is not None and tree.total_nodes == report.graph.nodes
    check_shape(tree)
    assert labels(tree) == ["x", "stages", "head", "output"]
    stages = item(tree, "stages")
    assert tree.items[stages].type == "ModuleList" and tree.items[stages].nodes == 2 * 2 * 5
    assert labels(tree, stages) == ["stages.0", "stages.1"]
    # a Stage holds one Sequential and nothing else: opening it shows the blocks at once
    stage = item(tree, "stages.0")
    assert tree.items[stage].type == "Stage" and labels(tree, stage) == ["blocks.0", "blocks.1"]
    block = item(tree, "stages.0.blocks.1")
    assert tree.items[block].type == "Block"
    assert labels(tree, block) == ["fc", "norm", "relu", "mul", "add"]  # its modules and its own ops, in order
    fc = item(tree, "stages.0.blocks.1.fc")
    assert tree.items[fc].type == "Linear" and [tree.items[i].kind for i in tree.children[fc]] == ["op"]


def test_every_module_is_one_box_in_execution_order():
    from tests.conftest import EXAMPLES

    report = torchaudit.scan(str(EXAMPLES / "transformer_block.py"), static_only=True)
    tree = graph_view_of(report)
    assert tree is not None
    check_shape(tree)
    names = [it.name for it in tree.items if it.kind == "module"]
    assert len(names) == len(set(names))  # no "(1/3)" runs: one box per module
    assert not any("/" in it.label for it in tree.items)
    assert labels(tree) == ["x", "norm1", "attn", "add", "norm2", "mlp", "add", "output"]
    attn = labels(tree, item(tree, "attn"))
    assert {"qkv", "drop", "proj"} <= set(attn) and "softmax" in attn


def outline(root_ops: int, modules: int) -> tuple[OutlineNode, ...]:
    """x, ``root_ops`` ops of the root, ``modules`` one-node modules, the output: a chain."""
    nodes = [OutlineNode("x", "placeholder", "x", "")]
    for i in range(root_ops):
        nodes.append(OutlineNode(f"op{i}", "call_function", "add", "", None, (nodes[-1].name,)))
    for i in range(modules):
        nodes.append(OutlineNode(f"m{i}", "call_module", "Linear", f"layers.{i}", "torch.nn.Linear", (nodes[-1].name,)))
    nodes.append(OutlineNode("output", "output", "output", "", None, (nodes[-1].name,)))
    return tuple(nodes)


def test_a_crowded_level_folds_runs_of_ops_then_ranges():
    tree = module_tree(outline(root_ops=40, modules=3))
    check_shape(tree)
    # the top level shows blocks: the root's runs of ops fold into one box each, however few
    assert labels(tree) == ["x", "40 ops", "layers", "output"]
    ops = tree.top[1]
    assert tree.items[ops].kind == "ops" and tree.items[ops].type == "add" and len(tree.children[ops]) == 40
    long = module_tree(outline(root_ops=100, modules=1))
    check_shape(long)
    ops = long.top[1]
    assert long.items[ops].label == "100 ops" and long.items[long.children[ops][0]].label == "op0 \u2026 op9"
    wide = module_tree(outline(root_ops=0, modules=300))
    check_shape(wide)
    layers = item(wide, "layers")
    ranges = wide.children[layers]
    assert [wide.items[r].kind for r in ranges] == ["range"] * len(ranges)
    assert wide.items[ranges[0]].label == "layers.0 \u2026 layers.17" and wide.items[ranges[0]].type == "18 modules"
    assert len(ranges) == 17
    assert [wide.items[m].name for r in ranges for m in wide.children[r]] == [f"layers.{i}" for i in range(300)]
    huge = module_tree(outline(root_ops=0, modules=2000))  # ranges of ranges
    check_shape(huge)


def test_item_names_the_script_derives_match():
    for tree in (module_tree(outline(5, 30)), graph_view_of(torchaudit.scan(Net(2, 3), torch.randn(2, 8), static_only=True))):
        assert tree is not None
        stored = explorer_data(tree, (), (0,) * len(tree.items), {}, "findings")["name"]
        for i, it in enumerate(tree.items):
            assert (stored[i] or derived_name(tree, i)) == it.name
        assert sum(1 for s in stored if s) < len(stored)  # most are derived


def _comparison(tree: ModuleTree, local: dict[str, ErrorStats], diverged: str | None = None) -> ComparisonResult:
    z = ErrorStats()
    nodes = tuple(NodeComparison(tree.items[i].name, None, "op", local.get(tree.items[i].name, z),
                                 local.get(tree.items[i].name, z), z, diverged=tree.items[i].name == diverged)
                  for i in range(tree.total_nodes))
    return ComparisonResult("dtype", dtype_comparison().reference, dtype_comparison().candidate, Status.DIVERGED,
                            tolerance={"atol": 1e-5, "rtol": 1e-5}, nodes=nodes)


def test_worst_local_error_per_box_over_the_status_tolerance():
    tree = module_tree(outline(root_ops=2, modules=3))
    c = _comparison(tree, {"m0": ErrorStats(2e-6, 1e-6, 0.0), "m1": ErrorStats(3e-4, 5e-4, 0.5),
                           "op1": ErrorStats(1e-6, 1e-7, 0.0), "output": ErrorStats(1.0, 1.0, 1.0)}, diverged="m1")
    worst = worst_local(tree, c)
    by_name = {it.name: worst[i] for i, it in enumerate(tree.items)}
    assert by_name["layers.0"] == pytest.approx(0.1) and by_name["layers.1"] == pytest.approx(30.0)
    assert by_name["layers"] == pytest.approx(30.0)  # the worst of its children
    assert by_name["layers.2"] == 0.0
    assert by_name["op1"] == pytest.approx(0.01)
    assert by_name["x"] is None and by_name["output"] is None  # the engine judges no input or output
    uncompared = _comparison(tree, {})
    uncompared = ComparisonResult(**{**uncompared.__dict__, "nodes": uncompared.nodes[:3]})
    assert worst_local(tree, uncompared)[item(tree, "layers")] is None


def test_path_from_the_inputs_to_the_first_divergence():
    nodes = (
        OutlineNode("x", "placeholder", "x", ""),
        OutlineNode("a", "call_function", "relu", "enc", None, ("x",)),
        OutlineNode("w", "get_attr", "weight", "enc.fc", None, ()),  # a weight: reached from no input
        OutlineNode("c", "call_function", "sin", "side", None, ("x",)),  # an input's, but d does not read it
        OutlineNode("b", "call_function", "linear", "enc.fc", None, ("a", "w")),
        OutlineNode("d", "call_function", "softmax", "head", None, ("b",)),
        OutlineNode("e", "call_function", "add", "head", None, ("d", "c")),
        OutlineNode("output", "output", "output", "", None, ("e",)),
    )
    tree = module_tree(nodes)
    d = tree.index["d"]
    assert [tree.items[i].name for i in divergence_path(tree, d)] == ["x", "a", "b", "d"]
    assert divergence_path(tree, tree.index["w"]) == (tree.index["w"],)
    c = _comparison(tree, {"d": ErrorStats(1.0, 1.0, 1.0)}, diverged="d")
    c = ComparisonResult(**{**c.__dict__, "first_divergence": dtype_comparison().first_divergence.__class__(
        "d", "head", "softmax", ErrorStats(1.0, 1.0, 1.0), ErrorStats(), ErrorStats(1.0, 1.0, 1.0))})
    report = torchaudit.report.Report({}, {}, None, [], [c], graph_outline=nodes)
    (mark,) = colourings(report, tree)
    assert mark.divergence == d and mark.path == divergence_path(tree, d) and mark.expected is False
    assert mark.worst[item(tree, "head")] == ABOVE or mark.worst[item(tree, "head")] > 1


def test_findings_mark_their_boxes_and_the_boxes_around_them():
    tree = module_tree(outline(root_ops=2, modules=3))
    findings = [
        Finding("TA101", Severity.ERROR, "t", "m", module="", node="op1"),
        Finding("TA106", Severity.WARNING, "t", "m", module="layers.1"),
        Finding("TA107", Severity.INFO, "t", "m", module="layers.1.inner"),  # no box of its own: its module's
        Finding("TA401", Severity.ERROR, "t", "m", module=None),  # model-wide: no box
        Finding("TA402", Severity.ERROR, "t", "m", module=""),  # the root, no node: no box
    ]
    report = torchaudit.report.Report({}, {}, None, findings, [])
    rank, codes = finding_marks(report, tree)
    assert rank[tree.index["op1"]] == 3 and codes[tree.index["op1"]] == ("TA101",)
    assert rank[item(tree, "layers.1")] == 2 and codes[item(tree, "layers.1")] == ("TA106", "TA107")
    assert rank[item(tree, "layers")] == 2 and rank[item(tree, "layers.0")] == 0
    assert not any(c for c in codes.values() if "TA401" in c or "TA402" in c)


@pytest.mark.slow  # traces and renders a 5,000-node graph
def test_5000_node_graph_opens_on_a_few_boxes():
    report = torchaudit.scan(Net(10, 100), torch.randn(2, 8), static_only=True)  # 1,000 blocks of 5 nodes
    tree = graph_view_of(report)
    assert tree is not None and tree.total_nodes == report.graph.nodes > 5000
    check_shape(tree)
    assert labels(tree) == ["x", "stages", "head", "output"]
    view = graph_explorer(report)
    assert view is not None and len(view.rows) == 4
    page = render_html(report)
    assert len(page) < 300_000
    assert f"{tree.total_nodes:,} graph nodes, opened on 4 top-level boxes" in page
