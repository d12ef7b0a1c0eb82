"""SARIF 2.1.0 for code-scanning dashboards (GitHub code scanning and others).

Rules go under ``tool.driver.rules`` with their docs; each finding becomes one ``result``
with its file, line and column where known. Paths below the working directory are written
relative to the ``SRCROOT`` base (``originalUriBaseIds``), others as ``file://`` URIs.
A finding that has no source line (a module-level or model-wide one) points at the model's
file, since dashboards drop results without a location, and names its module as a logical
location.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from torchaudit.report import Finding, Report, RuleInfo, Severity
from torchaudit.reports import wording as w

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _rule(code: str, finding: Finding, rules: Mapping[str, RuleInfo]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": code,
        "name": "".join(part.capitalize() for part in finding.title.split()[:8] if part.isalnum()) or code,
        "shortDescription": {"text": finding.title},
        "defaultConfiguration": {"level": LEVEL[finding.severity]},
    }
    info = rules.get(code)
    if info is not None:
        entry["name"] = info.name
        entry["shortDescription"] = {"text": info.title}
        entry["fullDescription"] = {"text": info.what}
        sections = "\n\n".join(f"{heading}:\n{text}" for heading, text in info.sections)
        markdown = "\n\n".join(f"**{heading}**\n\n{text}" for heading, text in info.sections)
        entry["help"] = {"text": sections, "markdown": markdown}
        entry["defaultConfiguration"] = {"level": LEVEL[info.severity]}
    entry["properties"] = {"tags": ["torchaudit", code[:3] + "xx"]}
    return entry


def _artifact(path: str, base: Path) -> dict[str, Any]:
    rel = w.rel_or_abs(path, base)
    if rel:
        return {"uri": rel, "uriBaseId": "SRCROOT"}
    return {"uri": Path(path).resolve().as_uri()}


def _location(f: Finding, report: Report, base: Path) -> dict[str, Any] | None:
    loc = f.location
    physical: dict[str, Any] | None = None
    if loc is not None and loc.file:
        physical = {"artifactLocation": _artifact(loc.file, base)}
        if loc.line is not None:
            region: dict[str, Any] = {"startLine": loc.line}
            if loc.column is not None:
                region["startColumn"] = loc.column
            physical["region"] = region
    elif report.target.get("file"):
        physical = {"artifactLocation": _artifact(str(report.target["file"]), base), "region": {"startLine": 1}}
    out: dict[str, Any] = {}
    if physical is not None:
        out["physicalLocation"] = physical
    if f.module is not None:
        out["logicalLocations"] = [{"fullyQualifiedName": w.module_name(f.module), "kind": "module"}]
    return out or None


def _result(f: Finding, rule_index: int, report: Report, base: Path) -> dict[str, Any]:
    text = f.message + (f" Fix: {f.fix}" if f.fix else "")
    result: dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": rule_index,
        "level": LEVEL[f.severity],
        "message": {"text": text},
    }
    location = _location(f, report, base)
    if location is not None:
        result["locations"] = [location]
    props = {k: v for k, v in (("module", f.module), ("node", f.node)) if v is not None}
    if f.evidence:
        props["evidence"] = json.loads(json.dumps(f.evidence, default=str))
    if props:
        result["properties"] = props
    return result


def sarif_dict(report: Report, base: Path | None = None) -> dict[str, Any]:
    from torchaudit import __version__

    base = (base or Path.cwd()).resolve()
    codes: dict[str, int] = {}
    rules: list[dict[str, Any]] = []
    for f in report.findings:
        if f.rule not in codes:
            codes[f.rule] = len(rules)
            rules.append(_rule(f.rule, f, report.rules))
    results = [_result(f, codes[f.rule], report, base) for f in report.findings]
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "torchaudit", "version": __version__, "semanticVersion": __version__, "rules": rules}},
        "originalUriBaseIds": {"SRCROOT": {"uri": base.as_uri() + "/"}},
        "results": results,
        "invocations": [
            {
                "executionSuccessful": True,
                "commandLine": report.command or "",
                "exitCode": report.exit_code,
            }
        ],
        "properties": {"verdict": report.summary.verdict, "fail_on": report.fail_on},
    }
    if not report.command:
        del run["invocations"][0]["commandLine"]
    if report.unreadable:  # `torchaudit checkpoint`: files it could not read (exit 2), each with why
        run["invocations"][0]["executionSuccessful"] = False
        run["invocations"][0]["toolExecutionNotifications"] = [
            {"level": "error", "message": {"text": f.error or ""},
             "locations": [{"physicalLocation": {"artifactLocation": _artifact(f.path, base)}}]}
            for f in report.unreadable
        ]
    if report.source_errors:  # `torchaudit lint`: files it could not read or parse (exit 2)
        run["invocations"][0]["executionSuccessful"] = False
        run["invocations"][0].setdefault("toolExecutionNotifications", []).extend(
            {"level": "error", "message": {"text": line}} for line in report.source_errors
        )
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def render_sarif(report: Report, base: Path | None = None) -> str:
    from torchaudit.reports.json_report import finite

    return json.dumps(finite(sarif_dict(report, base)), indent=2, allow_nan=False)
