"""DESIGN.md's JSON schema (schema_version 1), checked field by field with types."""

from __future__ import annotations

import json
from typing import Any

from torchaudit.report import Report

OPT_STR = (str, type(None))


def _has(obj: dict[str, Any], fields: dict[str, Any], where: str) -> None:
    for name, types in fields.items():
        assert name in obj, f"{where}.{name} missing"
        assert isinstance(obj[name], types), f"{where}.{name} is {type(obj[name]).__name__}"


def report_json(report: Report) -> dict[str, Any]:
    """Render the report to JSON text, parse it back, and check the schema."""
    from torchaudit.reports.json_report import render_json

    data = json.loads(render_json(report))
    check_schema(data)
    return data


def check_schema(data: dict[str, Any]) -> None:
    _check_common(data)
    _has(data["target"], {"spec": OPT_STR, "model_class": str, "checkpoint": OPT_STR}, "target")
    info = data["target"].get("checkpoint_info")
    if info is not None:  # scan --checkpoint: what the file was and how it loaded (README, Checkpoints)
        _has(info, {"path": str, "format": str, "wrapper_key": OPT_STR, "producer": OPT_STR, "tensors": (int, type(None)),
                    "unpickled": bool, "trusted": bool, "pickled_module": bool, "not_loaded_reason": OPT_STR,
                    "archive_problems": list, "damage": OPT_STR, "suffix_mismatch": OPT_STR,
                    "strict_load": (dict, type(None))}, "target.checkpoint_info")
    if "recording" in data:
        check_recording(data)
    _has(data["graph"], {"tracer": str, "nodes": int, "modules": int, "parameters": int, "buffers": int}, "graph")
    assert data["graph"]["tracer"] in ("fx", "transformers-fx", "export", "hooks")
    if "graph_view" in data:  # the modules the HTML graph draws (README, Reports)
        view = data["graph_view"]
        _has(view, {"total_nodes": int, "modules": list, "divergence_paths": dict}, "graph_view")
        for m in view["modules"]:
            _has(m, {"module": str, "type": str, "parent": OPT_STR, "nodes": int, "first": int, "worst_local": dict},
                 "graph_view.module")
            assert all(isinstance(v, (int, float, str)) for v in m["worst_local"].values())  # "inf" as JSON writes it


def check_recording(data: dict[str, Any]) -> None:
    """``recording``: scan --against RUN and compare RUN_A RUN_B (README, Recordings)."""
    rec = data["recording"]
    _has(rec, {"path": str, "granularity": str, "config": dict, "live_config": (dict, type(None)), "bytes": int,
               "weights_match": (bool, type(None)), "environments": dict, "environment_diff": list}, "recording")
    _has(rec["environments"], {"recorded": dict, "live": dict}, "recording.environments")
    for d in rec["environment_diff"]:
        _has(d, {"key": str}, "recording.environment_diff")
        assert "recorded" in d and "live" in d


def _check_common(data: dict[str, Any]) -> None:
    """What every report holds, with a model or without."""
    assert data["schema_version"] == 1
    _has(data["tool"], {"name": str, "version": str}, "tool")
    _has(data["environment"], {"python": str, "torch": str, "cuda_available": bool, "flags": dict}, "environment")
    _has(data["environment"]["flags"], {"allow_tf32_matmul": bool, "cudnn_benchmark": bool, "deterministic": bool}, "flags")
    assert isinstance(data["findings"], list) and isinstance(data["comparisons"], list)
    for f in data["findings"]:
        _has(f, {"rule": str, "severity": str, "title": str, "message": str, "module": OPT_STR, "node": OPT_STR,
                 "location": (dict, type(None)), "evidence": dict, "fix": str}, "finding")
        assert f["severity"] in ("error", "warning", "info")
    _has(data["summary"], {"errors": int, "warnings": int, "infos": int, "verdict": str, "fail_on": str}, "summary")


OPT_INT = (int, type(None))
VERDICTS = ("loads", "needs_allowlist", "dangerous", "ambiguous", "unreadable")
STATUSES = ("dangerous", "outside_allowlist", "module_class", "allowlisted")


def checkpoint_report_json(report: Report) -> dict[str, Any]:
    """``report_json`` for a ``torchaudit checkpoint`` report."""
    from torchaudit.reports.json_report import render_json

    data = json.loads(render_json(report))
    check_checkpoint_schema(data)
    return data


def check_checkpoint_schema(data: dict[str, Any]) -> None:
    """``torchaudit checkpoint`` (README, Checking a checkpoint without its model): no model, so
    ``target.model_class`` and ``graph`` are null and ``comparisons`` empty; ``checkpoint_files``
    holds one entry per file checked, in order."""
    _check_common(data)
    _has(data["target"], {"spec": str, "model_class": type(None), "checkpoint": type(None)}, "target")
    assert data["graph"] is None and data["comparisons"] == []
    assert isinstance(data["checkpoint_files"], list) and data["checkpoint_files"]
    for f in data["checkpoint_files"]:
        _has(f, {"path": str, "format": OPT_STR, "wrapper_key": OPT_STR, "producer": OPT_STR, "tensors": OPT_INT,
                 "dtypes": dict, "parameters": OPT_INT, "imports": list, "not_loaded_reason": OPT_STR, "verdict": str,
                 "error": OPT_STR}, "checkpoint_files[]")
        assert f["verdict"] in VERDICTS
        assert (f["error"] is None) == (f["verdict"] != "unreadable")
        assert all(isinstance(k, str) and isinstance(n, int) for k, n in f["dtypes"].items())
        assert (f["tensors"] is None) == (f["parameters"] is None)
        for g in f["imports"]:
            _has(g, {"name": str, "status": str, "why": str}, "checkpoint_files[].imports[]")
            assert g["status"] in STATUSES
