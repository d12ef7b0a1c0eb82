"""One parametrized test over every fixture in tests/fixtures/rules/: each marker's code,
module and line (see tests/rule_markers.py), in a scan and, for the rules that read the source
alone, in ``torchaudit lint``, which must report what the scan reports (code and line)."""

from __future__ import annotations

from pathlib import Path

import pytest

import torchaudit
from tests.rule_markers import Marker, parse
from torchaudit.lint import lint
from torchaudit.rules.manifest import SOURCE_RULES

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "rules").glob("*.py"))


def _line(f, path: Path):
    loc = f.location
    if loc is None or loc.line is None or Path(loc.file).resolve() != path.resolve():
        return None
    return loc.line


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture(path: Path) -> None:
    markers, clean = parse(path)
    assert markers or clean, f"{path.name} has no expectations"
    # the markers are the static rules' (TA1-TA6); a CLEAN fixture must stay quiet through the comparisons too
    report = torchaudit.scan(str(path), static_only=not clean)
    findings = report.findings
    strays = [f for f in findings if f.location is not None and f.location.line is not None and _line(f, path) is None]
    assert not strays, f"{path.name}: findings in other files: {[(f.rule, str(f.location)) for f in strays]}"
    got = [(f.rule, _line(f, path), f.module) for f in findings]
    for m in markers:
        if m.kind == "expect" and m.line is not None:
            assert (m.code, m.line, m.module) in got, f"{path.name}:{m.line}: expected {m.code} at module {m.module!r}; got {got}"
        elif m.kind == "expect":
            assert any(r == m.code and mod == m.module for r, _, mod in got), f"{path.name}: expected {m.code} at {m.module!r}; got {got}"
        elif m.line is not None:
            assert not any(r == m.code and line == m.line for r, line, _ in got), f"{path.name}:{m.line}: unexpected {m.code}"
        else:
            assert not any(r == m.code and mod == m.module for r, _, mod in got), f"{path.name}: unexpected {m.code} at {m.module!r}"
    # every finding of a rule under test is one the fixture expects
    codes = {m.code for m in markers}
    expected = {(m.code, m.line, m.module) for m in markers if m.kind == "expect" and m.line is not None}
    expected_mod = {(m.code, m.module) for m in markers if m.kind == "expect" and m.line is None}
    for rule, line, module in got:
        if rule in codes:
            assert (rule, line, module) in expected or (rule, module) in expected_mod, (
                f"{path.name}: unexpected {rule} at line {line}, module {module!r}"
            )
    if clean:
        loud = [(f.rule, f.message) for f in findings if f.severity.value in ("error", "warning")]
        assert not loud, f"{path.name} should be clean: {loud}"
    # lint reads the same source without a model: the source rules' findings at a line of this file are
    # the scan's, line for line, except those only the traced graph shows (``# lint: graph-only``); a
    # finding without a line comes from the environment (TA405: cuDNN's TF32 on a CUDA machine), which lint does not read
    graph_only = {(m.code, m.line) for m in markers if not m.lint}
    scanned = {(rule, line) for rule, line, _ in got if rule in SOURCE_RULES and line is not None} - graph_only
    assert _linted(path) == scanned, f"{path.name}: lint {sorted(_linted(path))}, scan {sorted(scanned)}"


def _linted(path: Path) -> set[tuple[str, int | None]]:
    return {(f.rule, _line(f, path)) for f in lint(path).findings}


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_in_lint(path: Path) -> None:
    """The markers of the rules lint runs, checked against lint alone (it names modules by class,
    so the code and the line are compared)."""
    markers, clean = parse(path)
    report = lint(path)
    assert report.exit_code in (0, 1) and not report.source_errors
    got = _linted(path)
    mine = [m for m in markers if m.code in SOURCE_RULES and m.line is not None]
    for m in mine:
        if m.kind == "expect" and m.lint:
            assert (m.code, m.line) in got, f"{path.name}:{m.line}: lint should report {m.code}; got {sorted(got)}"
        elif m.kind == "ok":
            assert (m.code, m.line) not in got, f"{path.name}:{m.line}: lint reports {m.code}"
    expected = {(m.code, m.line) for m in mine if _expected(m)}
    tested = {m.code for m in mine}
    assert {g for g in got if g[0] in tested} <= expected, f"{path.name}: lint reports more than the markers: {sorted(got)}"
    if clean:
        loud = [(f.rule, f.message) for f in report.findings if f.severity.value in ("error", "warning")]
        assert not loud, f"{path.name} should be clean in lint too: {loud}"


def _expected(m: Marker) -> bool:
    return m.kind == "expect" and m.lint


# rules whose only evidence is the environment: their firing and silent cases are in test_rules_units.py
ENVIRONMENT_ONLY = {"TA604"}


def test_every_static_rule_has_a_firing_and_a_silent_fixture() -> None:
    from torchaudit.rules.engine import load_rules

    kinds: dict[str, set[str]] = {}
    for path in FIXTURES:
        for m in parse(path)[0]:
            kinds.setdefault(m.code, set()).add(m.kind)
    for code in load_rules():
        if code.startswith(("TA1", "TA2", "TA4", "TA5")) or code in ("TA308", "TA309", "TA311", "TA602", "TA603"):
            assert kinds.get(code) == {"expect", "ok"}, f"{code} lacks a firing or a silent fixture: {kinds.get(code)}"
    assert ENVIRONMENT_ONLY <= set(load_rules())
