"""The JSON report (DESIGN.md, ``schema_version`` 1)."""

from __future__ import annotations

import json
import math
from typing import Any

from torchaudit.report import Report


def _finite(obj: Any) -> Any:
    """JSON has no NaN or Infinity: write them as strings so every parser reads the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def render_json(report: Report) -> str:
    return json.dumps(_finite(report.to_dict()), indent=2, allow_nan=False, default=str)
