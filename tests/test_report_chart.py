"""The error chart of a comparison (issue 12, item 14): module ticks, hover, width, tolerance line."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

from tests.report_samples import dtype_comparison, mlp_report, reload_comparison
from torchaudit.report import ComparisonResult, ErrorStats, NodeComparison, Status
from torchaudit.reports.chart import CHAR_W, WIDTH, error_chart
from torchaudit.reports.html import render_html
from torchaudit.reports.tolerance import ABOVE, local_ratio, tolerance_ratio

TOL = {"atol": 1e-05, "rtol": 1.3e-06}


def test_tolerance_ratio_sits_on_the_side_of_1_the_status_test_says():
    inside = ErrorStats(max_abs=2e-5, max_rel=1e-6, mismatch_fraction=0.0)  # max_abs > atol, yet no element outside
    assert tolerance_ratio(inside, TOL) == 1e-6 / 1.3e-6
    wide = ErrorStats(max_abs=5e-5, max_rel=5e-6, mismatch_fraction=0.0)  # the bound says 3.8; the test said inside
    assert tolerance_ratio(wide, TOL) == 1.0
    outside = ErrorStats(max_abs=3e-4, max_rel=2e-3, mismatch_fraction=0.1)
    assert tolerance_ratio(outside, TOL) == pytest.approx(30.0)
    zero_ref = ErrorStats(max_abs=3e-4, max_rel=0.0, mismatch_fraction=0.1)  # |ref| = 0: no relative error recorded
    assert tolerance_ratio(zero_ref, TOL) == ABOVE > 1.0
    assert tolerance_ratio(ErrorStats(), TOL) == 0.0
    assert tolerance_ratio(ErrorStats(max_abs=math.nan, max_rel=math.nan, mismatch_fraction=1.0), TOL) == math.inf
    assert tolerance_ratio(ErrorStats(1.0, 1.0, 1.0), {"atol": 0.0, "rtol": 0.0}) == math.inf  # --atol 0 --rtol 0
    # a node that diverged is above the line whatever its statistics (the reference could not run it)
    unknown = NodeComparison("bn", "bn", "batch_norm", ErrorStats(0, 0, 1.0, 0), ErrorStats(0, 0, 1.0, 0), ErrorStats(),
                             diverged=True)
    assert local_ratio(unknown, dtype_comparison()) > 1.0


def test_tolerance_line_is_the_status_line():
    """Every node that diverged is drawn above the tolerance line, every node with no element
    outside tolerance at or below it (y grows downwards)."""
    for c in (dtype_comparison(), reload_comparison()):
        chart = error_chart(c)
        assert chart is not None and chart.tolerance_y is not None and chart.tolerance_label == "tolerance"
        ys = [float(p.split(",")[1]) for p in chart.local_points.split()]
        for node, y in zip(c.nodes, ys):
            if node.diverged:
                assert y < chart.tolerance_y, node.node
            if node.local.mismatch_fraction == 0:
                assert y >= chart.tolerance_y, node.node
        assert chart.y_label == "error / tolerance"
        assert any(t.label == "1" and t.pos == chart.tolerance_y for t in chart.y_ticks)


def test_x_axis_is_labelled_by_top_level_module_and_hover_names_each_node():
    chart = error_chart(dtype_comparison())
    assert chart is not None
    assert [t.label for t in chart.x_ticks] == ["fc1", "bn", "fc2"]  # the root's own nodes get no label
    assert len(chart.hovers) == 6
    relu = chart.hovers[3].title
    assert relu.splitlines()[0] == "node 3 relu (op) in <root>"
    assert "total 0.0045, local 0.002, inherited 0.0025" in relu and "diverged" in relu


def _many_modules(count: int, nodes_per: int, name: str) -> ComparisonResult:
    z = ErrorStats()
    nodes = tuple(NodeComparison(f"n{i}", f"{name}{i // nodes_per}.sub", "add", z, z, z) for i in range(count * nodes_per))
    return ComparisonResult("dtype", dtype_comparison().reference, dtype_comparison().candidate, Status.MATCHED,
                            tolerance=TOL, nodes=nodes)


def test_module_labels_never_overlap():
    for count, per, name in ((300, 5, "layer_"), (40, 2, "a_very_long_module_name_"), (3, 1000, "block")):
        chart = error_chart(_many_modules(count, per, name))
        assert chart is not None and chart.x_ticks
        spans = sorted((t.pos - len(t.label) * CHAR_W / 2, t.pos + len(t.label) * CHAR_W / 2) for t in chart.x_ticks)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
        assert spans[0][0] >= 0 and spans[-1][1] <= WIDTH
        assert all(len(t.label) <= 18 for t in chart.x_ticks)
        assert all(t.title.startswith(name) for t in chart.x_ticks if t.label.endswith("\u2026"))
    big = error_chart(_many_modules(3, 1000, "block"))
    assert big is not None and [t.label for t in big.x_ticks] == ["block0", "block1", "block2"]
    assert len(big.hovers) <= 200 and big.hovers[0].title.startswith("nodes 0\u2013")


def test_chart_scales_to_its_box_and_draws_no_divergence_without_one():
    page = render_html(mlp_report())
    charts = re.findall(r'<svg class="chart"[^>]*>', page)
    assert charts and all("viewBox" in c and "width=" not in c for c in charts)  # CSS gives it width: 100%
    sample = dtype_comparison()
    matched = dataclasses.replace(sample, status=Status.MATCHED, first_divergence=None,
                                  nodes=tuple(dataclasses.replace(n, diverged=False) for n in sample.nodes))
    chart = error_chart(matched)
    assert chart is not None and chart.divergent is None
    page = render_html(dataclasses.replace(mlp_report(), comparisons=[matched]))
    svg = re.search(r'<svg class="chart".*?</svg>', page, re.S)
    assert svg and 'class="div"' not in svg.group(0) and "first divergence" not in svg.group(0)
