"""Sentences, plurals, numbers and paths, shared by the HTML, Markdown and SARIF renderers.

Every renderer words the verdict and the numbers the same way, so the page, the pull-request
comment and the terminal tell one story.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
import os
from pathlib import Path

from torchaudit.report import UNRUNNABLE_NOTE, ComparisonResult, ErrorStats, Finding, Location, Report, Severity
from torchaudit.report import display_path as report_display_path

_SEVERITY_NOUN = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "info"}


def plural(count: int, noun: str) -> str:
    """``1 error``, ``2 errors``, ``0 infos`` (the terminal summary's nouns)."""
    if count == 1:
        return f"1 {noun}"
    return f"{count:,} {noun}" + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def number(value: float | int | str | None) -> str:
    """An error figure: ``0``, ``3.2e-07``, ``0.0412``, ``nan``, ``inf``."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value) or abs(value) >= sys.float_info.max:  # JSON holds an infinity as the largest float
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.2e}"


def counts_sentence(report: Report) -> str:
    s = report.summary
    return (
        f"{plural(s.errors, 'error')}, {plural(s.warnings, 'warning')}, {plural(s.infos, 'info')} "
        f"(fail on {s.fail_on})"
    )


def display_path(path: str | None) -> str:
    """A source path as every report shows it (``torchaudit.report.display_path``)."""
    return report_display_path(path) if path else ""


def where(location: Location | None, module: str | None = None) -> str:
    """``examples/model.py:18:5``, else the module path, else ``<model>``."""
    if location is not None and location.file:
        text = display_path(location.file)
        if location.line is not None:
            text += f":{location.line}"
            if location.column is not None:
                text += f":{location.column}"
        return text
    if module:
        return module
    return "<model>"


def module_name(module: str | None) -> str:
    return module if module else "<root>"


def target_name(report: Report) -> str:
    spec = str(report.target.get("spec") or report.target.get("model_class") or "model")
    return display_path(spec) if os.path.isabs(spec) else spec


def failing(report: Report) -> list[Finding]:
    threshold = {"error": 3, "warning": 2, "info": 1, "never": 99}[report.fail_on]
    return [f for f in report.findings if f.severity.rank >= threshold]


@dataclass(frozen=True)
class RuleSummary:
    """The findings of one rule folded into one line (how terminal and Markdown show infos)."""

    rule: str
    count: int
    title: str
    modules: tuple[str, ...]  # where they are, in report order, without repeats

    def line(self, limit: int = 5) -> str:
        shown = ", ".join(self.modules[:limit]) + (f" and {len(self.modules) - limit} more" if len(self.modules) > limit else "")
        return f"{self.rule} \u00d7{self.count}  {self.title}" + (f": {shown}" if shown else "")


def by_rule(findings: list[Finding]) -> list[RuleSummary]:
    """One summary per rule, in the order the rules first appear."""
    groups: dict[str, list[Finding]] = {}
    for f in findings:
        groups.setdefault(f.rule, []).append(f)
    return [
        RuleSummary(code, len(group), group[0].title,
                    tuple(dict.fromkeys(module_name(f.module) for f in group if f.module is not None)))
        for code, group in groups.items()
    ]


def verdict_sentence(report: Report) -> str:
    """Why the scan passes or fails, in one sentence (renderers put PASS or FAIL before it)."""
    s = report.summary
    gate = f"--fail-on {s.fail_on}"
    bad = failing(report)
    if bad:
        first = bad[0]
        return (
            f"{plural(len(bad), 'finding')} at or above {s.fail_on} {'fails' if len(bad) == 1 else 'fail'} the gate ({gate}); "
            f"the first is {first.rule} ({first.title}) at {where(first.location, first.module)}."
        )
    total = len(report.findings)
    if s.fail_on == "never":
        return f"{gate} lets no finding fail the scan ({plural(total, 'finding')} reported)."
    if total == 0:
        return f"No findings, so nothing reaches the gate ({gate})."
    below = ", ".join(
        plural(n, noun) for n, noun in ((s.errors, "error"), (s.warnings, "warning"), (s.infos, "info")) if n
    )
    return f"No finding reaches the gate ({gate}); {below} {'is' if total == 1 else 'are'} below it."


EXPECTED = "differs as expected"


def status_label(c: ComparisonResult) -> str:
    """A comparison's status as reports word it: ``matched``, ``diverged``, ``skipped``,
    ``error``, or ``differs as expected`` for a divergence its configurations are meant to give
    (eval against train), which is information, not a failure."""
    if c.status.value in ("diverged", "accumulated") and c.expected_difference:
        return EXPECTED
    return c.status.value


def status_css(c: ComparisonResult) -> str:
    """The class that colours a comparison's status: ``expected`` (neutral blue) for an
    expected difference, else the status itself."""
    return "expected" if status_label(c) == EXPECTED else c.status.value


def reason(c: ComparisonResult) -> str:
    """Why a comparison was skipped or failed (the reasons never repeat the comparison's name:
    reports put the name beside them)."""
    return c.skipped_reason or ""


def comparison_sentence(c: ComparisonResult) -> str:
    """What one comparison found, in one sentence (and its engine notes, if any, but the one
    the sentence already tells: why the reference could not run the node it names)."""
    text = _comparison_sentence(c)
    notes = untold_notes(c)
    if notes:
        text += " Note: " + "; ".join(notes) + "."
    return text


def untold_notes(c: ComparisonResult) -> list[str]:
    """The engine's notes, less the one the divergence's own wording already tells."""
    why = failure(c)
    told = UNRUNNABLE_NOTE.format(node=c.first_divergence.node, why=why) if c.first_divergence and why is not None else None
    return [n for n in c.notes if n != told]


def failure(c: ComparisonResult) -> str | None:
    """Why the reference could not run the node a comparison blames (it then has no error
    figures, only placeholders), or ``None``."""
    return c.could_not_run(c.first_divergence.node) if c.first_divergence is not None else None


def divergence_error(c: ComparisonResult) -> str:
    """The blamed node's error in words: its own, inherited and total max abs, or why it could
    not be measured."""
    d = c.first_divergence
    if d is None:
        return ""
    why = failure(c)
    if why is not None:
        return f"the reference could not run it ({why})"
    return f"its own error is {number(d.local.max_abs)} (max abs), inherited {number(d.inherited.max_abs)}, total {number(d.total.max_abs)}"


def _comparison_sentence(c: ComparisonResult) -> str:
    head = f"{c.name} ({c.reference} vs {c.candidate})"
    if c.status.value == "skipped":
        return f"{head} was skipped: {reason(c) or 'no reason given'}."
    if c.status.value == "error":
        return f"{head} could not finish: {reason(c) or 'no reason given'}."
    verb = "first differs, as expected," if c.expected_difference else "diverged first"
    if failure(c) is not None:
        verb = "could not be compared"
    if c.first_divergence is not None:
        d = c.first_divergence
        return f"{head} {verb} at node {d.node} ({module_name(d.module)}, {d.op}, {where(d.location)}): {divergence_error(c)}."
    if c.status.value == "accumulated":
        out = c.output
        most = "; ".join(
            f"{x.node} ({module_name(x.module)}, {x.op}, {where(x.location)}"
            + (f", entered in the code of {module_name(x.entered_in)} after {x.after})" if x.entered_in is not None else ")")
            for x in c.contributors)
        lead = f"{head} differs as expected" if c.expected_difference else f"{head} accumulated error"
        return (f"{lead}: the outputs are outside tolerance ({out.get('mismatch_fraction', 0.0):.1%} of elements, "
                f"max abs {number(out.get('max_abs'))}) and no single node's own error is to blame"
                + (f"; most of it is added at {most}." if most else "."))
    if c.status.value == "diverged":
        if c.expected_difference:
            return f"{head} differs as expected, with no single node to blame."
        return f"{head} diverged, with no single node to blame."
    return f"{head} matched: no node's own error exceeds the tolerance."


def error_cells(stats: ErrorStats | None, exact: bool = False) -> tuple[str, str, str, str]:
    """max abs, max rel, mismatch and cosine; ``n/a`` throughout for a node that was not
    measured, and for max rel and cosine of an integer or boolean node (compared exactly)."""
    if stats is None:
        return ("n/a",) * 4
    if exact:
        return (number(stats.max_abs), "n/a", number(stats.mismatch_fraction), "n/a")
    return (number(stats.max_abs), number(stats.max_rel), number(stats.mismatch_fraction), number(stats.cosine))


def severity_noun(severity: Severity) -> str:
    return _SEVERITY_NOUN[severity]


def rel_or_abs(path: str, base: Path) -> str:
    """``path`` relative to ``base`` with forward slashes, or ``None`` when outside it."""
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return ""


def streamed_sentence(report: Report) -> str | None:
    """How the comparisons got their weights, when they were streamed from disk (else ``None``)."""
    st = report.extras.get("streamed_weights")
    if not st:
        return None
    where = ", ".join(display_path(p) for p in st.get("checkpoints") or ())
    return (f"weights streamed from {where} ({size_text(st.get('bytes', 0))}; the comparisons read "
            f"{size_text(st.get('bytes_read', 0))}), because {st.get('reason')}")


def size_text(n: int) -> str:
    """``4.40 GB``, ``12.3 MB``, ``99 kB``: bytes in decimal units."""
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"
