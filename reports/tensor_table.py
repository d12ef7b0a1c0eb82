"""The per-tensor table of ``torchaudit diff`` for the terminal (reads ``report.extras``)."""

from __future__ import annotations

from rich.console import Console, JustifyMethod
from rich.table import Table

from torchaudit.report import Report

_LABEL = {
    "changed": "changed", "unchanged": "same", "only_in_a": "only in A", "only_in_b": "only in B",
    "shape_changed": "shape changed", "dtype_changed": "dtype changed",
}


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.3g}"


def _shape(a: list[int] | None, b: list[int] | None) -> str:
    fa = "x".join(map(str, a)) if a is not None else "-"
    fb = "x".join(map(str, b)) if b is not None else "-"
    return fa if fa == fb else f"{fa} -> {fb}"


def print_tensor_table(report: Report, to_stderr: bool = False, show_unchanged: bool = False) -> None:
    rows = report.extras.get("tensor_diff", [])
    console = Console(stderr=to_stderr, highlight=False)
    table = Table(title="tensors (A -> B)", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (("key", "left"), ("shape", "left"), ("dtype", "left"),
                                                      ("max abs", "right"), ("max rel", "right"), ("", "left"))
    for col, justify in columns:
        table.add_column(col, justify=justify)
    hidden = 0
    for r in rows:
        if r["status"] == "unchanged" and not show_unchanged:
            hidden += 1
            continue
        dtype = r["dtype_a"] if r["dtype_a"] == r["dtype_b"] else f"{r['dtype_a'] or '-'} -> {r['dtype_b'] or '-'}"
        table.add_row(r["key"], _shape(r["shape_a"], r["shape_b"]), dtype, _num(r["max_abs"]), _num(r["max_rel"]),
                      _LABEL.get(r["status"], r["status"]))
    console.print(table)
    if hidden:
        console.print(f"{hidden} tensors unchanged")
