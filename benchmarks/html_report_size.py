"""Size, render time and browser responsiveness of the HTML report as the traced graph grows
(prints, asserts nothing).

    python benchmarks/html_report_size.py            # 10, 100 and 1,000 blocks (63 to 6,003 nodes)
    python benchmarks/html_report_size.py --no-browser

Each model is a chain of blocks (Linear, LayerNorm, ReLU, mul, add) in stages of 10 blocks, so
the graph view has a few levels to open. Every report carries two comparisons with a record per
node (``dtype`` and ``reload``, as the dynamic stage writes them), so the page holds two charts
and two colourings. With Chromium and playwright (the test dependencies) it also opens each page
in headless Chromium and times, median of 3: loading the page (navigation start to the end of
DOMContentLoaded, which includes the inline script's first drawing); parsing the graph's JSON;
drawing the top level again ("top level" button); opening the first box that opens, then the
first one inside it (each click redraws before it returns).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

import torchaudit
from torchaudit.report import ComparisonResult, Config, Divergence, ErrorStats, NodeComparison, Report, Status
from torchaudit.reports.graph_view import graph_view_of
from torchaudit.reports.html import render_html

ROOT = Path(__file__).resolve().parents[1]


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.norm(self.fc(x))) * 0.5


def comparison(report: Report, name: str, diverge_at: int) -> ComparisonResult:
    rows = []
    for i, n in enumerate(report.graph_outline):
        local = ErrorStats(2e-3, 6e-3, 0.25) if i == diverge_at else ErrorStats(1e-7 * (i % 13), 1e-7 * (i % 11))
        rows.append(NodeComparison(n.name, n.module, n.op_name, ErrorStats(1e-6 * (i % 7)), local, ErrorStats(),
                                   diverged=i == diverge_at))
    d = rows[diverge_at]
    return ComparisonResult(name, Config(dtype="float64"), Config(), Status.DIVERGED, tolerance={"atol": 1e-5, "rtol": 1.3e-6},
                            first_divergence=Divergence(d.node, d.module, d.op, d.local, d.inherited, d.total), nodes=tuple(rows))


def report_of(blocks: int) -> Report:
    model = nn.Sequential(*[nn.Sequential(*[Block() for _ in range(10)]) for _ in range(blocks // 10)])
    report = torchaudit.scan(model, torch.randn(2, 8), static_only=True)
    n = report.graph.nodes if report.graph else 0
    return dataclasses.replace(report, comparisons=[comparison(report, "dtype", n * 7 // 10), comparison(report, "reload", n // 4)])


def browser_times(page: Path) -> tuple[float, ...] | None:
    """Medians: seconds to load ``page``; ms to parse the graph's data, to draw the top level, to
    open the first box that opens, then the first inside it."""
    sys.path.insert(0, str(ROOT))
    from tests.browser import FLAGS, chromium_path, why_no_browser

    if why_no_browser() is not None:
        return None
    from playwright.sync_api import sync_playwright

    loads: list[float] = []
    parses: list[float] = []
    draws: list[float] = []
    opens: list[float] = []
    inner: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=FLAGS)
        try:
            for _ in range(3):
                tab = browser.new_page(viewport={"width": 1200, "height": 900})
                tab.goto(page.resolve().as_uri())
                tab.wait_for_selector("html[data-ready='1']", timeout=60000)
                # from the request to the end of DOMContentLoaded: parsing, styles and the inline script
                loads.append(tab.evaluate("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd") / 1000)
                ms = tab.evaluate("""() => {
                    const click = g => { const t = performance.now(); g.dispatchEvent(new MouseEvent('click', {bubbles: true}));
                                         return performance.now() - t; };
                    const open = () => Array.from(document.querySelectorAll('#graph-svg g.box.open-able'));
                    let t = performance.now();
                    JSON.parse(document.getElementById('graph-data').textContent);
                    const parse = performance.now() - t;
                    const draw = click(document.getElementById('graph-collapse'));  // redraws the top level
                    const first = click(open()[0]);
                    const second = open().length ? click(open()[0]) : 0;
                    return [parse, draw, first, second];
                }""")
                parses.append(ms[0])
                draws.append(ms[1])
                opens.append(ms[2])
                inner.append(ms[3])
                tab.close()
        finally:
            browser.close()
    return tuple(statistics.median(x) for x in (loads, parses, draws, opens, inner))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    print(f"{'blocks':>7} {'nodes':>7} {'top boxes':>9} {'html KiB':>9} {'graph KiB':>9} {'charts KiB':>10} "
          f"{'render s':>9} {'load s':>7} {'parse ms':>8} {'draw ms':>8} {'open ms':>8} {'open2 ms':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for blocks in args.blocks:
            report = report_of(blocks)
            start = time.perf_counter()
            page = render_html(report)
            elapsed = time.perf_counter() - start
            tree = graph_view_of(report)
            assert tree is not None
            data = re.search(r'<script type="application/json" id="graph-data">(.*?)</script>', page, re.S)
            charts = sum(len(c) for c in re.findall(r'<svg class="chart".*?</svg>', page, re.S))
            path = Path(tmp) / f"r{blocks}.html"
            path.write_text(page, encoding="utf-8")
            times = None if args.no_browser else browser_times(path)
            browser = (f"{times[0]:>7.2f} " + " ".join(f"{t:>8.1f}" for t in times[1:])) if times else "(no browser)"
            print(f"{blocks:>7} {tree.total_nodes:>7} {len(tree.top):>9} {len(page) / 1024:>9.1f} "
                  f"{len(data.group(1)) / 1024 if data else 0:>9.1f} {charts / 1024:>10.1f} {elapsed:>9.3f} {browser}")


if __name__ == "__main__":
    main()
