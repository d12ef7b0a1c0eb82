"""The per-tensor table of ``torchaudit diff`` (``report.extras["tensor_diff"]``): one view model
that the terminal, the HTML page and the Markdown comment all render, so they say the same."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console, JustifyMethod
from rich.table import Table

from torchaudit.report import Report
from torchaudit.reports import wording as w

LABEL = {
    "changed": "changed", "unchanged": "same", "only_in_a": "only in A", "only_in_b": "only in B",
    "shape_changed": "shape changed", "dtype_changed": "dtype changed",
    "not_compared": "not compared (views repeat values)",
}
COLUMNS = ("key", "shape", "dtype", "max abs", "max rel", "change")


@dataclass(frozen=True)
class TensorRow:
    key: str
    shape: str
    dtype: str
    max_abs: str
    max_rel: str
    change: str
    status: str


@dataclass(frozen=True)
class TensorTable:
    a: str  # the first checkpoint (the reference), as a display path
    b: str  # the second checkpoint (the candidate)
    rows: tuple[TensorRow, ...]  # the rows shown: every differing tensor up to the limit (and the unchanged, if asked)
    total: int  # tensors in A or B
    differing: int  # tensors that are not unchanged
    unchanged: int
    more: int  # differing tensors beyond the limit, not in ``rows``
    sentence: str  # "2 of 9 tensors differ (1 changed, 1 only in B); 7 are the same."


def _both(a: str | None, b: str | None) -> str:
    """One side's value when only one file has the tensor or both agree, else ``a -> b``."""
    if a is None or b is None or a == b:
        return a if a is not None else (b or "")
    return f"{a} -> {b}"


def _shape(shape: list[int] | None) -> str | None:
    if shape is None:
        return None
    return "x".join(map(str, shape)) if shape else "scalar"


def _row(r: dict[str, Any]) -> TensorRow:
    num = (lambda x: "" if x is None else w.number(x))
    return TensorRow(r["key"], _both(_shape(r["shape_a"]), _shape(r["shape_b"])), _both(r["dtype_a"], r["dtype_b"]),
                     num(r["max_abs"]), num(r["max_rel"]),
                     LABEL.get(r["status"], r["status"]), r["status"])


def tensor_table(report: Report, limit: int | None = None, show_unchanged: bool = False) -> TensorTable | None:
    """The table of a ``diff`` report (``None`` for a report without ``tensor_diff``): the tensors
    that differ, in A's order, at most ``limit`` of them."""
    data = report.extras.get("tensor_diff")
    if data is None:
        return None
    shown = [r for r in data if show_unchanged or r["status"] != "unchanged"]
    differing = sum(1 for r in data if r["status"] != "unchanged")
    cut = shown if limit is None else shown[:limit]
    kinds: dict[str, int] = {}
    for r in data:
        if r["status"] != "unchanged":
            kinds[LABEL.get(r["status"], r["status"])] = kinds.get(LABEL.get(r["status"], r["status"]), 0) + 1
    detail = f" ({', '.join(f'{n:,} {label}' for label, n in kinds.items())})" if kinds else ""
    unchanged = len(data) - differing
    sentence = (f"{differing:,} of {w.plural(len(data), 'tensor')} {'differs' if differing == 1 else 'differ'}{detail}; "
                f"{unchanged:,} {'is' if unchanged == 1 else 'are'} the same.")
    if not data:
        sentence = "Neither checkpoint holds a tensor."
    files = report.target.get("checkpoints") or ["", ""]
    return TensorTable(
        a=w.display_path(files[0]), b=w.display_path(files[1]), rows=tuple(_row(r) for r in cut), total=len(data),
        differing=differing, unchanged=unchanged, more=len(shown) - len(cut), sentence=sentence,
    )


def print_tensor_table(report: Report, to_stderr: bool = False, show_unchanged: bool = False) -> None:
    view = tensor_table(report, show_unchanged=show_unchanged)
    if view is None:
        return
    console = Console(stderr=to_stderr, highlight=False)
    table = Table(title="tensors (A -> B)", title_justify="left")
    justify: tuple[JustifyMethod, ...] = ("left", "left", "left", "right", "right", "left")
    for col, side in zip(COLUMNS, justify):
        table.add_column("" if col == "change" else col, justify=side)
    for r in view.rows:
        table.add_row(r.key, r.shape, r.dtype, r.max_abs, r.max_rel, r.change)
    console.print(table)
    if view.unchanged and not show_unchanged:
        console.print(f"{view.unchanged} tensors unchanged")
