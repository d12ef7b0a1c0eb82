"""Open a report in a real headless Chromium (Debian's package, driven by playwright)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def why_no_browser() -> str | None:
    """The reason the browser test cannot run here, or ``None`` when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r requirements-dev.txt)"
    if chromium_path() is None:
        return "no Chromium executable on PATH (.ci/run installs Debian's chromium package)"
    return None


@dataclass
class PageResult:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


def open_report(html: Path, tmp: Path, screenshot: Path | None = None, width: int = 1200,
                act: Callable[[Any], dict[str, Any]] | None = None, javascript: bool = True) -> PageResult:
    """Load ``html`` from disk in a ``width`` px wide window (``javascript=False``: with scripts
    off); record console errors, every request, and facts of the page; then ``act(page)`` (a
    playwright page) adds its own facts."""
    from playwright.sync_api import sync_playwright

    result = PageResult()
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp / "profile"), executable_path=chromium_path(), headless=True, args=FLAGS,
            viewport={"width": width, "height": 900}, java_script_enabled=javascript,
        )
        try:
            page = browser.new_page()
            page.on("console", lambda m: result.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: result.console_errors.append(f"pageerror: {e}"))
            page.on("request", lambda r: result.requests.append(r.url))
            started = time.perf_counter()
            page.goto(html.resolve().as_uri())
            if javascript:
                page.wait_for_selector("html[data-ready='1']", timeout=15000)
            loaded = time.perf_counter() - started
            result.facts = page.evaluate(
                """() => ({
                    title: document.title,
                    pwned: window.__pwned === undefined ? null : String(window.__pwned),
                    sections: Array.from(document.querySelectorAll('main > section')).map(s => s.id),
                    visible: Array.from(document.querySelectorAll('main > section')).every(s => s.getBoundingClientRect().height > 0),
                    text: document.body.innerText,
                    scripts: document.querySelectorAll('script').length,
                    findings: document.querySelectorAll('article.finding').length,
                    cards: document.querySelectorAll('.first-divergence').length,
                    charts: document.querySelectorAll('svg.chart polyline').length,
                    boxes: document.querySelectorAll('svg.graph g.box').length,
                    boxTitles: Array.from(document.querySelectorAll('svg.graph [data-item] > title')).map(t => t.textContent),
                    docsOpen: document.querySelectorAll('details.docs[open]').length,
                    viewportWidth: document.documentElement.clientWidth,
                    scrollWidth: document.documentElement.scrollWidth,
                    chartWidths: Array.from(document.querySelectorAll('svg.chart')).map(c => c.getBoundingClientRect().right),
                })"""
            )
            if javascript and page.query_selector("#expand-docs"):
                page.click("#expand-docs")
                result.facts["docsOpenAfterClick"] = page.evaluate("document.querySelectorAll('details.docs[open]').length")
            result.facts["loadSeconds"] = loaded
            if act is not None:
                result.facts.update(act(page))
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return result


GRAPH_STATE = """() => {
    const info = g => ({label: g.querySelector('text').textContent, cls: g.getAttribute('class'),
                        title: g.querySelector('title').textContent});
    return {
        boxes: Array.from(document.querySelectorAll('#graph-svg g.box')).map(info),
        open: Array.from(document.querySelectorAll('#graph-svg g.head')).map(g => ({...info(g), frame: g.parentNode.getAttribute('class')})),
        edges: document.querySelectorAll('#graph-svg path.edge').length,
        pathEdges: document.querySelectorAll('#graph-svg path.edge.path').length,
        width: document.getElementById('graph-svg').getBoundingClientRect().width,
    };
}"""


def graph_state(page: Any) -> dict[str, Any]:
    """The graph's boxes as drawn: each box's label, classes and title; the open boxes' title bars."""
    result: dict[str, Any] = page.evaluate(GRAPH_STATE)
    return result


def click_box(page: Any, name: str) -> float:
    """Click the box (or an open box's title bar) whose title starts with ``name`` (a module's
    full path, a range's ``blocks.0 … blocks.9``); the milliseconds the page took to redraw (it
    redraws before the click returns)."""
    elapsed: float = page.evaluate(
        """(name) => {
            const g = Array.from(document.querySelectorAll('#graph-svg [data-item]')).find(g => {
                const first = g.querySelector('title').textContent.split('\\n')[0];
                return first === name || first.startsWith(name + ' ');
            });
            if (!g) { throw new Error('no box ' + name); }
            const t = performance.now();
            g.dispatchEvent(new MouseEvent('click', {bubbles: true}));
            return performance.now() - t;
        }""",
        name,
    )
    return elapsed
