"""The HTML page's view model: every sentence and number of the page, built from a Report.

The template only loops and branches over these frozen dataclasses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from torchaudit.report import ComparisonResult, Finding, Location, Report, RuleInfo, Severity, exact_dtype
from torchaudit.reports import wording as w
from torchaudit.reports.chart import ErrorChart, error_chart
from torchaudit.reports.graph_explorer import GraphExplorer, graph_explorer
from torchaudit.reports.recording_view import RecordingView, recording_view
from torchaudit.reports.tensor_table import TensorTable, tensor_table

CONTEXT_LINES = 3
TOP_NODES = 5
MAX_TENSOR_ROWS = 1000  # of a diff's tensor table; the JSON report has every row


@dataclass(frozen=True)
class SourceLine:
    number: int
    text: str
    marked: bool


@dataclass(frozen=True)
class FindingView:
    anchor: str
    rule: str
    severity: str
    title: str
    message: str
    fix: str
    where: str
    module: str
    node: str
    docs: tuple[tuple[str, str], ...]
    snippet: tuple[SourceLine, ...]
    evidence: str


@dataclass(frozen=True)
class SeverityGroup:
    severity: str
    heading: str
    findings: tuple[FindingView, ...]


@dataclass(frozen=True)
class ErrorRow:
    label: str
    cells: tuple[str, str, str, str]


@dataclass(frozen=True)
class DivergenceView:
    heading: str  # "First divergence", or "First difference (expected)" for eval against train
    node: str
    module: str
    op: str
    where: str
    source: str
    rows: tuple[ErrorRow, ...]


@dataclass(frozen=True)
class NodeRow:
    index: int
    node: str
    module: str
    op: str
    total: str
    local: str
    diverged: bool


@dataclass(frozen=True)
class ComparisonView:
    anchor: str
    name: str
    status: str  # as worded: "matched", "diverged", "differs as expected", ...
    status_css: str  # "matched", "diverged", "expected", "skipped", "error"
    sentence: str
    reference: str
    candidate: str
    tolerance: str
    output: str
    divergence: DivergenceView | None
    nonfinite: str
    chart: ErrorChart | None
    top_nodes: tuple[NodeRow, ...]
    state_diff: tuple[tuple[str, str, str, str], ...]
    show_state_diff: bool


@dataclass(frozen=True)
class PageView:
    title: str
    verdict: str
    verdict_sentence: str
    counts: str
    target_rows: tuple[tuple[str, str], ...]
    command: str
    graph_rows: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    environment_rows: tuple[tuple[str, str], ...]
    groups: tuple[SeverityGroup, ...]
    comparisons: tuple[ComparisonView, ...]
    comparisons_sentence: str
    graph: GraphExplorer | None
    tool_version: str
    tensors: TensorTable | None = None  # the per-tensor table of a diff
    recording: RecordingView | None = None  # scan --against, compare: both environments side by side


def read_snippet(location: Location | None, base: Path | None = None) -> tuple[SourceLine, ...]:
    """The lines around ``location`` with its line marked; empty when the file cannot be read."""
    if location is None or location.line is None or not location.file:
        return ()
    path = Path(location.file)
    candidates = [path] if path.is_absolute() else [Path.cwd() / path] + ([base / path] if base else [])
    for candidate in candidates:
        try:
            lines = candidate.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        first = max(1, location.line - CONTEXT_LINES)
        last = min(len(lines), location.line + CONTEXT_LINES)
        return tuple(SourceLine(i, lines[i - 1], i == location.line) for i in range(first, last + 1))
    return ()


def finding_view(f: Finding, index: int, base: Path | None, rules: Mapping[str, RuleInfo]) -> FindingView:
    evidence = json.dumps(f.evidence, indent=1, sort_keys=True, default=str) if f.evidence else ""
    return FindingView(
        anchor=f"finding-{index}",
        rule=f.rule,
        severity=f.severity.value,
        title=f.title,
        message=f.message,
        fix=f.fix,
        where=w.where(f.location, f.module),
        module=w.module_name(f.module) if f.module is not None and f.location is not None else "",
        node=f.node or "",
        docs=rules[f.rule].sections if f.rule in rules else (),
        snippet=read_snippet(f.location, base),
        evidence=evidence,
    )


def _source_line(location: Location | None, base: Path | None) -> str:
    for line in read_snippet(location, base):
        if line.marked:
            return line.text.strip()
    return ""


def comparison_view(c: ComparisonResult, index: int, base: Path | None, exact: frozenset[str] = frozenset()) -> ComparisonView:
    """``exact``: the names of the graph's integer and boolean nodes (no relative error, no cosine)."""
    d = c.first_divergence
    divergence = None
    failed = w.failure(c) is not None  # the reference could not run the node: no figures to show
    if d is not None:
        divergence = DivergenceView(
            heading="First difference (expected)" if c.expected_difference else "First divergence",
            node=d.node,
            module=w.module_name(d.module),
            op=d.op,
            where=w.where(d.location),
            source=_source_line(d.location, base),
            rows=tuple(
                ErrorRow(label, w.error_cells(None if failed else stats, exact=d.node in exact))
                for label, stats in (
                    ("local (this node's own)", d.local),
                    ("inherited (from upstream)", d.inherited),
                    ("total (what you see)", d.total),
                )
            ),
        )
    ranked = sorted(range(len(c.nodes)), key=lambda i: -_sortable(c.nodes[i].local.max_abs))[:TOP_NODES]
    top = tuple(_node_row(i, c) for i in sorted(ranked))
    tol = ", ".join(f"{k} {w.number(v)}" for k, v in sorted(c.tolerance.items()))
    inexact = ("max_rel", "cosine") if "output" in exact else ()  # an integer output: those two mean nothing
    out = ", ".join(f"{k} {w.number(v) if isinstance(v, float) else v}" for k, v in c.output.items() if k not in inexact)
    nonfinite = ""
    if c.first_nonfinite:
        nonfinite = "NaN or Inf first appears at " + ", ".join(
            f"{k} {_nonfinite_value(k, v)}" for k, v in c.first_nonfinite.items() if v is not None)
    return ComparisonView(
        anchor=f"comparison-{index}",
        name=c.name,
        status=w.status_label(c),
        status_css=w.status_css(c),
        sentence=w.comparison_sentence(c),
        reference=str(c.reference),
        candidate=str(c.candidate),
        tolerance=tol,
        output=out,
        divergence=divergence,
        nonfinite=nonfinite,
        chart=error_chart(c),
        top_nodes=top,
        state_diff=tuple((s.name, s.kind, s.reference, s.candidate) for s in c.state_diff),
        show_state_diff=c.name == "reload" or bool(c.state_diff),
    )


def _nonfinite_value(key: str, value: Any) -> str:
    """A value of ``first_nonfinite``; its location as every report shows one."""
    if key == "location" and isinstance(value, dict) and value.get("file"):
        return w.where(Location(value["file"], value.get("line"), value.get("column")))
    return str(value)


def _node_row(i: int, c: ComparisonResult) -> NodeRow:
    n = c.nodes[i]
    if c.could_not_run(n.node) is not None:  # placeholders, not errors
        return NodeRow(i, n.node, w.module_name(n.module), n.op, "n/a", "n/a", n.diverged)
    return NodeRow(i, n.node, w.module_name(n.module), n.op, w.number(n.total.max_abs), w.number(n.local.max_abs), n.diverged)


def _sortable(value: float) -> float:
    return float("inf") if value != value else value  # NaN first


def _rows(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows.extend(_rows(value, f"{prefix}{key}."))
        else:
            rows.append((prefix + key, "" if value is None else str(value)))
    return rows


def page_view(report: Report) -> PageView:
    from torchaudit import __version__

    target_file = report.target.get("file")
    base = Path(target_file).parent if target_file else None
    groups = []
    index = 0
    for severity in Severity:
        views = []
        for f in report.findings:
            if f.severity == severity:
                views.append(finding_view(f, index, base, report.rules))
                index += 1
        if views:
            groups.append(SeverityGroup(severity.value, w.plural(len(views), w.severity_noun(severity)), tuple(views)))
    target_rows = [("target", w.target_name(report))]
    for key in ("model_class", "file", "checkpoint", "inputs", "inputs_source"):
        value = report.target.get(key)
        if value:
            target_rows.append((key.replace("_", " "), w.display_path(value) if key == "file" else str(value)))
    note = (report.target.get("checkpoint_info") or {}).get("suffix_mismatch")
    if note:  # the content decides how a file is read; the name said otherwise
        target_rows.append(("checkpoint format", f"{note}: read as such"))
    for label, path in zip(("checkpoint A", "checkpoint B"), report.target.get("checkpoints") or ()):
        target_rows.append((label, w.display_path(path)))
    streamed = w.streamed_sentence(report)
    if streamed:
        target_rows.append(("weights", streamed))
    graph_rows: list[tuple[str, str]] = []
    if report.graph is not None:
        g = report.graph
        graph_rows = [("tracer", g.tracer), ("nodes", f"{g.nodes:,}"), ("modules", f"{g.modules:,}"),
                      ("parameters", f"{g.parameters:,}"), ("buffers", f"{g.buffers:,}")]
    exact = frozenset(n.name for n in report.graph_outline if exact_dtype(n.dtype))
    comparisons = tuple(comparison_view(c, i, base, exact) for i, c in enumerate(report.comparisons))
    if report.comparisons:
        comp_sentence = "; ".join(f"{c.name} {w.status_label(c)}" for c in report.comparisons) + "."
    else:
        comp_sentence = "No comparison ran in this scan (static rules only)."
    return PageView(
        title=f"torchaudit: {w.target_name(report)}",
        verdict=report.summary.verdict,
        verdict_sentence=w.verdict_sentence(report),
        counts=w.counts_sentence(report),
        target_rows=tuple(target_rows),
        command=report.command or "",
        graph_rows=tuple(graph_rows),
        notes=tuple(report.graph.notes) if report.graph else (),
        environment_rows=tuple(_rows(report.environment)),
        groups=tuple(groups),
        comparisons=comparisons,
        comparisons_sentence=comp_sentence,
        graph=graph_explorer(report),
        tool_version=__version__,
        tensors=tensor_table(report, limit=MAX_TENSOR_ROWS),
        recording=recording_view(report),
    )
