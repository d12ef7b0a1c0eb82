"""The JSON report (DESIGN.md, ``schema_version`` 1)."""

from __future__ import annotations

import json
import math
from typing import Any

from torchaudit.report import Report


def finite(obj: Any) -> Any:
    """JSON has no NaN or Infinity: write them as strings so every parser reads the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def report_data(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data, with the graph view the HTML page draws."""
    from torchaudit.reports.graph_view import graph_view_of

    data = report.to_dict()
    view = graph_view_of(report)
    if view is not None:
        data["graph_view"] = view.to_dict()
    return finite(data)


def render_json(report: Report) -> str:
    return json.dumps(report_data(report), indent=2, allow_nan=False, default=str)
