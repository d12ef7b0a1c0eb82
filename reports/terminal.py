"""The terminal summary: readable in five seconds, grouped by severity.

Each finding is one line (``file:line  CODE  module  message``) and its one-line fix; a rule
with many findings in one group shows the first few and a count, so an inventory of forty
dropout layers never buries the one error.
"""

from __future__ import annotations

from typing import Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from torchaudit.reports.recording_view import recording_view
from torchaudit.report import Finding, Report, RuleInfo, Severity, display_path
from torchaudit.reports import wording as w

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
SHOWN_PER_RULE = 3  # findings of one rule shown per severity group before "... and N more"


def _where(f: Finding) -> str:
    if f.location is not None and f.location.file:
        return str(f.location)
    return "<model>"


def _module(f: Finding) -> str:
    if f.module is None:
        return ""
    return f.module or "<root>"


def _group_lines(group: list[Finding], collapse: bool = True) -> Iterable[tuple[Finding | None, int]]:
    """Findings to show, and for a collapsed rule a (None, hidden count) entry after its last."""
    per_rule: dict[str, int] = {}
    totals: dict[str, int] = {}
    for f in group:
        totals[f.rule] = totals.get(f.rule, 0) + 1
    limit = {r: (n if n <= SHOWN_PER_RULE + 1 or not collapse else SHOWN_PER_RULE) for r, n in totals.items()}
    for f in group:
        seen = per_rule.get(f.rule, 0)
        per_rule[f.rule] = seen + 1
        if seen < limit[f.rule]:
            yield f, 0
        if seen + 1 == totals[f.rule] and totals[f.rule] > limit[f.rule]:
            yield None, totals[f.rule] - limit[f.rule]


def print_summary(report: Report, to_stderr: bool = False, detail: str = "normal") -> None:
    """``detail``: ``quiet`` prints the errors and the verdict; ``normal`` folds the infos into one
    line per rule and shows a few findings per rule; ``verbose`` prints every finding."""
    console = Console(stderr=to_stderr, highlight=False, soft_wrap=True)
    quiet, verbose = detail == "quiet", detail == "verbose"
    target = report.target.get("spec") or report.target.get("model_class")
    graph = report.graph
    head = f"torchaudit: {target}"
    if graph is not None:
        head += f"  ({graph.tracer} graph, {graph.nodes} nodes, {graph.parameters:,} parameters)"
    console.print(head, style="bold")
    ckpt = report.target.get("checkpoint_info")
    if ckpt:
        console.print(Text(checkpoint_line(ckpt), style="dim"))
    for severity in Severity:
        group = [f for f in report.findings if f.severity == severity]
        if not group or (quiet and severity != Severity.ERROR):
            continue
        console.print(Text(f"{severity.value}s ({len(group)})", style=_STYLE[severity]))
        if severity == Severity.INFO and not verbose:
            for summary in w.by_rule(group):
                console.print(Text("  ") + Text(summary.line(), style=_STYLE[severity]))
            continue
        last_rule = ""
        for f, hidden in _group_lines(group, collapse=not verbose):
            if f is None:
                console.print(Text(f"  ... and {hidden} more {last_rule} (see --json)", style="dim"))
                continue
            last_rule = f.rule
            line = Text("  ")
            line.append(_where(f))
            line.append("  ")
            line.append(f.rule, style=_STYLE[severity])
            if _module(f):
                line.append(f"  {_module(f)}", style="bold")
            line.append(f"  {f.message}")
            console.print(line)
            if f.fix:
                console.print(Text(f"      fix: {f.fix}", style="dim"))
    for text, style in [] if quiet else comparison_rows(report):
        console.print(Text(text, style=style))
    recorded = recording_view(report)
    if recorded is not None and not quiet:
        console.print(Text(recorded.sentence, style="dim"))
    baseline = report.extras.get("baseline")
    if baseline:
        console.print(Text(f"baseline {baseline['file']}: {baseline['known']} known findings hidden, {baseline['new']} new", style="dim"))
    streamed = w.streamed_sentence(report)
    if streamed:
        console.print(Text(streamed, style="dim"))
    meta = report.extras.get("meta")
    if meta:
        console.print(Text(f"meta scan ({meta.get('built_with')}): no tensor values were materialized; comparisons did not run", style="dim"))
    skipped = report.extras.get("skipped_rules") or {}
    if skipped and not quiet:
        console.print(Text(f"skipped {len(skipped)} rules:", style="dim"))
        by_reason: dict[str, list[str]] = {}
        for code, why in sorted(skipped.items()):
            by_reason.setdefault(why, []).append(code)
        for why, codes in by_reason.items():
            console.print(Text(f"  {', '.join(codes)}: {why}", style="dim"))
    s = report.summary
    verdict_style = "bold green" if s.verdict == "pass" else "bold red"
    console.print(
        Text(f"{s.verdict.upper()}", style=verdict_style)
        + Text(f": {_counts(report)}")
    )


def _counts(report: Report) -> str:
    """What follows the verdict on the last line: ``2 errors, 1 warnings, 4 infos (fail on error)``."""
    s = report.summary
    return f"{s.errors} errors, {s.warnings} warnings, {s.infos} infos (fail on {s.fail_on})"


def print_concise(report: Report, to_stderr: bool = False) -> None:
    """One line per finding, ``file:line:col: CODE [severity] message`` (ruff's concise), then the verdict."""
    console = Console(stderr=to_stderr, highlight=False, soft_wrap=True)
    for f in report.findings:
        loc = f.location
        where = f"{loc}{f':{loc.column}' if loc is not None and loc.column else ''}" if loc is not None and loc.file else "<model>"
        module = f" [{_module(f)}]" if _module(f) else ""
        console.print(Text(f"{where}: {f.rule} [{f.severity.value}]{module} {f.message}"))
    console.print(Text(f"{report.summary.verdict.upper()}: {_counts(report)}"))


_GITHUB_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def print_github(report: Report) -> None:
    """GitHub Actions workflow commands, one annotation per finding (``::error file=...,line=...::``),
    so findings appear on the pull request's diff; the verdict last, as a plain line."""
    for f in report.findings:
        props = []
        loc = f.location
        if loc is not None and loc.file:
            props.append(f"file={_gh_property(display_path(loc.file))}")  # relative to the checkout CI runs in
            if loc.line:
                props.append(f"line={loc.line}")
            if loc.column:
                props.append(f"col={loc.column}")
        props.append(f"title={_gh_property(f'{f.rule} {f.title}')}")
        text = f.message + (f" (fix: {f.fix})" if f.fix else "")
        print(f"::{_GITHUB_LEVEL[f.severity]} {','.join(props)}::{_gh_data(text)}")
    print(f"torchaudit {report.summary.verdict.upper()}: {_counts(report)}")


def checkpoint_line(info: dict) -> str:
    """One line on the checkpoint: format, wrapper, and whether it loaded with strict=True."""
    parts = [info["format"]]
    if info.get("suffix_mismatch"):
        parts.append(info["suffix_mismatch"])  # "named .pt but is a safetensors file": read as what it is
    if info.get("wrapper_key"):
        parts.append(f"unwrapped from {info['wrapper_key']!r}" + (" (Lightning)" if info.get("producer") == "lightning" else ""))
    if info.get("trusted"):
        parts.append("UNPICKLED WITH weights_only=False (--trust-checkpoint)")
    strict = info.get("strict_load") or {}
    if info.get("not_loaded_reason"):
        parts.append(info["not_loaded_reason"])
    elif strict.get("ok"):
        fix = f" after {strict['prefix_fix']}" if strict.get("prefix_fix") else ""
        parts.append(f"loaded into a copy of the model with strict=True{fix}")
    elif strict.get("error"):
        err = strict["error"]
        parts.append(err if err.startswith("not loaded") else f"strict load failed: {err}")
    return f"checkpoint: {info['path']}  (" + "; ".join(parts) + ")"


def rules_table(rules: Iterable[RuleInfo]) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("code")
    table.add_column("severity")
    table.add_column("lint")
    table.add_column("title")
    for info in rules:
        table.add_row(info.code, Text(info.severity.value, style=_STYLE[info.severity]), "lint" if info.lint else "", info.title)
    return table


def print_rules(rules: Iterable[RuleInfo]) -> None:
    Console(highlight=False, soft_wrap=True).print(rules_table(rules))


def print_rule_docs(info: RuleInfo) -> None:
    console = Console(highlight=False, soft_wrap=True)
    console.print(Text(f"{info.code}  {info.title}", style="bold") + Text(f"  ({info.severity.value})", style=_STYLE[info.severity]))
    for heading, body in info.sections:
        console.print()
        console.print(Text(heading, style="bold"))
        for line in body.splitlines():
            console.print(Text("  " + line))


_COMPARISON_STYLE = {"diverged": "red", "accumulated": "red", "error": "red", "expected": "cyan", "matched": "green", "skipped": "dim"}


def comparison_lines(report: Report) -> list[str]:
    """One line per comparison; comparisons skipped for one and the same reason share a line."""
    return [text for text, _ in comparison_rows(report)]


def comparison_rows(report: Report) -> list[tuple[str, str]]:
    """``comparison_lines`` with the style of each: red for a divergence or an error, cyan
    for an expected difference (eval against train), green for matched, dim for skipped."""
    rows: list[tuple[str, str] | list[str]] = []  # a finished line and its style, or the names skipped for one reason
    skipped: dict[str, list[str]] = {}
    for c in report.comparisons:
        reason = w.reason(c)
        if c.status.value == "skipped":
            if reason not in skipped:
                skipped[reason] = []
                rows.append(skipped[reason])
            skipped[reason].append(c.name)
            continue
        text = f"compare {c.name}: {w.status_label(c)}"
        if c.first_divergence:
            d = c.first_divergence
            text += f" at {d.node} ({d.module or '<root>'}, {d.op})"
        elif reason:
            text += f" ({reason})"
        rows.append((text, _COMPARISON_STYLE.get(w.status_css(c), "")))
        rows.extend((f"  note: {note}", "dim") for note in c.notes)
    reasons = {id(names): reason for reason, names in skipped.items()}
    return [row if isinstance(row, tuple) else (f"compare {', '.join(row)}: skipped ({reasons[id(row)]})", "dim") for row in rows]
