"""The Markdown summary: short enough for a pull-request comment (at most 60 lines).

Verdict, counts, the top findings (most severe first), each comparison's first divergence
and, for a ``diff``, the tensors that differ (at most 15, folded in a ``<details>``). Text from
the model is escaped so that it renders literally.
"""

from __future__ import annotations

import re

from torchaudit.report import Report, Severity
from torchaudit.reports.recording_view import recording_view
from torchaudit.reports import wording as w
from torchaudit.reports.tensor_table import tensor_table

MAX_LINES = 60
MAX_FINDINGS = 15
MAX_TENSORS = 15  # rows of a diff's tensor table
MAX_TEXT = 220
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#!~])")


def escape(text: str, limit: int = MAX_TEXT) -> str:
    """One line of literal text: no HTML, no Markdown markup, no line breaks."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def code(text: str) -> str:
    """Inline code that cannot be broken out of (backticks replaced)."""
    text = " ".join(str(text).split()).replace("`", "'")
    return f"`{text}`" if text else "``"


def _comparison_lines(report: Report) -> list[str]:
    lines = []
    for c in report.comparisons:
        head = f"- {code(c.name)} ({code(str(c.reference))} vs {code(str(c.candidate))}): **{w.status_label(c)}**"
        d = c.first_divergence
        if d is not None:
            head += (
                f"{',' if c.expected_difference else ''} first at node {code(d.node)} in {code(w.module_name(d.module))} ({escape(d.op)}, "
                f"{code(w.where(d.location))}): "
                + (f"own error {w.number(d.local.max_abs)}, inherited {w.number(d.inherited.max_abs)}, "
                   f"total {w.number(d.total.max_abs)} (max abs)" if w.failure(c) is None else escape(w.divergence_error(c)))
            )
            if c.state_diff:
                names = ", ".join(code(s.name) for s in c.state_diff[:5])
                more = f" and {len(c.state_diff) - 5} more" if len(c.state_diff) > 5 else ""
                head += f"; state that differs: {names}{more}"
        elif c.skipped_reason:
            head += f": {escape(w.reason(c))}"
        if w.untold_notes(c):
            head += "; note: " + escape("; ".join(w.untold_notes(c)))
        lines.append(head)
    return lines


def _tensor_lines(report: Report) -> list[str]:
    """A diff's changed tensors, capped, folded in ``<details>`` (a blank line after the summary
    lets GitHub render the table inside it)."""
    view = tensor_table(report, limit=MAX_TENSORS)
    if view is None:
        return []
    head = f"<details><summary>Tensors (A \u2192 B): {escape(view.sentence)}</summary>"
    lines = ["", head, "", f"A: {code(view.a)}, B: {code(view.b)}"]
    if view.rows:  # shapes and dtypes are ours (digits, "x", "->", torch's dtype names): nothing to escape
        lines += ["", "| key | shape | dtype | max abs | max rel | change |", "|---|---|---|---:|---:|---|"]
        lines += [f"| {code(r.key)} | {r.shape} | {r.dtype} | {r.max_abs} | {r.max_rel} | {r.change} |"
                  for r in view.rows]
    if view.more:
        lines += ["", f"\u2026 and {view.more} more that differ in the full report"]
    return lines + ["", "</details>"]


def _recording_lines(report: Report) -> list[str]:
    """Both environments of a comparison against a recording, side by side, folded."""
    view = recording_view(report)
    if view is None:
        return []
    a, b = view.labels
    lines = ["", f"<details><summary>Environments: {escape(view.sentence, 400)}</summary>", "",
             f"| | {a} | {b} |", "|---|---|---|"]
    lines += [f"| {'**' if r.differs else ''}{code(r.key)}{'**' if r.differs else ''} | {code(r.recorded)} | {code(r.live)} |"
              for r in view.rows]
    return lines + ["", "</details>"]


def render_markdown(report: Report) -> str:
    s = report.summary
    icon = "\u274c" if s.verdict == "fail" else "\u2705"
    lines = [
        f"### {icon} torchaudit {s.verdict.upper()}: {code(w.target_name(report))}",
        "",
        escape(w.verdict_sentence(report), 400),
        "",
        "| errors | warnings | infos | fail on | comparisons |",
        "|---:|---:|---:|---|---|",
        f"| {s.errors} | {s.warnings} | {s.infos} | {s.fail_on} | "
        + (escape(", ".join(f"{c.name} {w.status_label(c)}" for c in report.comparisons)) or "none")
        + " |",
    ]
    streamed = w.streamed_sentence(report)
    if streamed:
        lines += ["", f"_{escape(streamed, 400)}_"]
    comparisons = _comparison_lines(report)
    command = ("diff" if "tensor_diff" in report.extras else "checkpoint" if report.checkpoint_files
               else "compare" if "recordings" in report.target else "scan")
    tail = ((["", "**Comparisons**", "", *comparisons] if comparisons else []) + _tensor_lines(report) + _recording_lines(report)
            + ["", f"_Full report: the HTML or JSON output of `torchaudit {command}`._"])
    # what is left of the 60 lines for findings: a heading, a blank line and maybe a "more" line
    room = MAX_LINES - len(lines) - len(tail) - 4
    loud = [f for f in report.findings if f.severity != Severity.INFO]
    infos = w.by_rule([f for f in report.findings if f.severity == Severity.INFO])
    info_lines = ["", f"<details><summary>{w.plural(s.infos, 'info')}: nothing here fails the gate</summary>", "",
                  *(f"- {escape(i.line())}" for i in infos), "", "</details>"] if infos else []
    room -= len(info_lines)
    shown = loud[: max(0, min(MAX_FINDINGS, room))]
    if loud:
        lines += ["", f"**Findings** ({len(shown)} of {len(loud)} errors and warnings, most severe first)", ""]
        for f in shown:
            lines.append(
                f"- **{f.severity.value}** {code(f.rule)} {code(w.where(f.location, f.module))}"
                + (f" in {code(w.module_name(f.module))}" if f.module is not None and f.location else "")
                + f": {escape(f.message)}" + (f" \u2014 fix: {escape(f.fix)}" if f.fix else "")
            )
        if len(shown) < len(loud):
            lines.append(f"- \u2026 and {len(loud) - len(shown)} more in the full report")
    lines += info_lines + tail
    return "\n".join(lines[:MAX_LINES]) + "\n"
