"""A comparison's first divergence as a short plain-text table, for test output: what
``torchaudit.assert_consistent`` and the pytest plugin's gate messages show.

    first divergence (models: cpu:float32:eval vs cpu:float32:eval)
      node       mul (mul)
      module     head
      source     tests/dynamic/models.py:41
                 max abs    max rel
      local      2          0.6667
      inherited  0          0
      total      2          0.6667

Plain text, no colour: pytest prints it under ``E`` lines and in CI logs.
"""

from __future__ import annotations

from torchaudit.report import ComparisonResult
from torchaudit.reports import wording as w


def divergence_table(c: ComparisonResult) -> str:
    """The table of ``c``'s first divergence (``""`` when it has none)."""
    d = c.first_divergence
    if d is None:
        return ""
    rows = [
        ("node", f"{d.node} ({d.op})"),
        ("module", w.module_name(d.module)),
        ("source", w.where(d.location) if d.location is not None else "unknown"),
    ]
    lines = [f"first divergence ({c.name}: {c.reference} vs {c.candidate})"]
    lines += [f"  {name:<10} {value}" for name, value in rows]
    why = w.failure(c)
    if why is not None:
        lines.append(f"  {'error':<10} not measured: the reference could not run it ({why})")
        return "\n".join(lines)
    cells = [("", "max abs", "max rel")] + [
        (name, w.number(stats.max_abs), w.number(stats.max_rel))
        for name, stats in (("local", d.local), ("inherited", d.inherited), ("total", d.total))
    ]
    lines += [f"  {name:<10} {a:<10} {r}".rstrip() for name, a, r in cells]
    return "\n".join(lines)
