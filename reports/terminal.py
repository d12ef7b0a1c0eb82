"""The terminal summary: readable in five seconds, grouped by severity."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from torchaudit.report import Report, Severity

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def print_summary(report: Report, to_stderr: bool = False) -> None:
    console = Console(stderr=to_stderr, highlight=False, soft_wrap=True)
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
        if not group:
            continue
        console.print(Text(f"{severity.value}s ({len(group)})", style=_STYLE[severity]))
        for f in group:
            where = str(f.location) if f.location else (f.module or "<model>")
            line = Text("  ")
            line.append(f.rule, style=_STYLE[severity])
            line.append(f"  {where}")
            if f.module and f.location:
                line.append(f"  [{f.module}]", style="dim")
            line.append(f"  {f.message}")
            console.print(line)
            if f.fix:
                console.print(Text(f"      fix: {f.fix}", style="dim"))
    for c in report.comparisons:
        text = f"compare {c.name}: {c.status.value}"
        if c.first_divergence:
            d = c.first_divergence
            text += f" at {d.node} ({d.module or '<root>'}, {d.op})"
        elif c.skipped_reason:
            text += f" ({c.skipped_reason})"
        console.print(text)
    meta = report.extras.get("meta")
    if meta:
        console.print(Text(f"meta scan ({meta.get('built_with')}): no tensor values were materialized", style="dim"))
    skipped = report.extras.get("skipped_rules") or {}
    if skipped:
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
        + Text(f": {s.errors} errors, {s.warnings} warnings, {s.infos} infos (fail on {s.fail_on})")
    )


def checkpoint_line(info: dict) -> str:
    """One line on the checkpoint: format, wrapper, and whether it loaded with strict=True."""
    parts = [info["format"]]
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
        parts.append(f"strict load failed: {strict['error']}")
    return f"checkpoint: {info['path']}  (" + "; ".join(parts) + ")"
