"""Release gates: a baseline of accepted findings, matched by rule, module and a fingerprint
that survives moving code (not by line number)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tokenize
from collections import Counter
from pathlib import Path
from typing import Any, TypedDict

from torchaudit.errors import OptionError
from torchaudit.report import Finding, Report

BASELINE_VERSION = 1


class BaselineEntry(TypedDict):
    """One accepted finding, as a baseline file lists it."""

    rule: str
    module: str | None
    fingerprint: str
    message: str


def _code_only(line: str) -> str:
    """A source line without comments and with whitespace collapsed."""
    try:
        tokens = [
            t.string
            for t in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline)
            if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
        ]
        return " ".join(tokens)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return " ".join(line.split("#", 1)[0].split())


def source_text(finding: Finding) -> str:
    loc = finding.location
    if loc is None or loc.line is None:
        return ""
    try:
        lines = Path(loc.file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    return _code_only(lines[loc.line - 1]) if 0 < loc.line <= len(lines) else ""


def fingerprint(finding: Finding) -> str:
    """sha256 of rule, module, graph op/target and the normalized source line: stable when
    the line moves, new when the code or the place in the model changes."""
    target = str(finding.evidence.get("target") or finding.evidence.get("attribute") or "")
    parts = [finding.rule, finding.module or "", target, source_text(finding)]
    if not parts[3] and not target:  # no code to anchor it: the title and module must do
        parts.append(finding.title)
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _key(entry: dict[str, Any]) -> tuple[str, str, str]:  # an entry as read back from JSON
    return (entry["rule"], entry.get("module") or "", entry["fingerprint"])


def entries(report: Report) -> list[BaselineEntry]:
    out: list[BaselineEntry] = [
        {"rule": f.rule, "module": f.module, "fingerprint": fingerprint(f), "message": f.message}
        for f in report.findings
    ]
    return sorted(out, key=lambda e: (e["rule"], e["module"] or "", e["fingerprint"], e["message"]))


def write_baseline(report: Report, path: str | Path) -> int:
    found = entries(report)
    data = {"schema_version": BASELINE_VERSION, "tool": "torchaudit", "findings": found}
    try:
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OptionError(f"cannot write the baseline {path}: {exc.strerror}", "pass a writable path") from exc
    return len(found)


def read_baseline(path: str | Path) -> Counter[tuple[str, str, str]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        found = data["findings"]
        return Counter(_key(e) for e in found)
    except FileNotFoundError as exc:
        raise OptionError(f"baseline file not found: {path}", "write one first with --write-baseline") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OptionError(f"{path} is not a torchaudit baseline", "write one with --write-baseline") from exc


def apply_baseline(report: Report, path: str | Path) -> Report:
    """The report with findings already in the baseline removed (counted in extras)."""
    known = read_baseline(path)
    new: list[Finding] = []
    hidden = 0
    for f in report.findings:
        key = (f.rule, f.module or "", fingerprint(f))
        if known[key] > 0:
            known[key] -= 1
            hidden += 1
        else:
            new.append(f)
    extras = dict(report.extras)
    extras["baseline"] = {"file": str(path), "known": hidden, "new": len(new)}
    return dataclasses.replace(report, findings=new, extras=extras)
