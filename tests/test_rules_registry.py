"""The rule registry: every code of the catalogue's families, documented, unique.

``register`` itself enforces a valid code, a severity and title, and the four doc sections, so
every rule that imports has them; the tests here check that ``register`` does reject what it
must, and what it does not enforce (the Fact section, the catalogue, the commands)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from torchaudit.cli import app
from torchaudit.report import Severity
from torchaudit.rules.engine import DOC_HEADINGS, Rule, load_rules, parse_docs, register

CATALOGUE = (
    [f"TA10{i}" for i in range(1, 10)]
    + [f"TA20{i}" for i in range(1, 6)]
    + ["TA308", "TA309"]
    + [f"TA40{i}" for i in range(1, 6)]
    + [f"TA50{i}" for i in range(1, 7)]
    + ["TA602", "TA603", "TA604"]
    + ["TA901", "TA902", "TA903", "TA904"]
)
runner = CliRunner()


def test_docs_are_split_into_their_sections_dedented_with_an_optional_fact() -> None:
    class Documented:
        """
        What it finds:
            a thing
              indented more
        Why it matters:
            it matters
        Example:
            x = 1
        Fix:
            do y
        Fact:
            torch.nn.Module.eval
        """

    docs = parse_docs(Documented)
    assert docs.sections() == [
        ("What it finds", "a thing\n  indented more"), ("Why it matters", "it matters"), ("Example", "x = 1"),
        ("Fix", "do y"), ("Fact", "torch.nn.Module.eval"),
    ]
    Documented.__doc__ = Documented.__doc__.split("        Fact:")[0]
    assert [h for h, _ in parse_docs(Documented).sections()] == list(DOC_HEADINGS)  # no Fact: four sections


_DOCS = """
    What it finds:
        x
    Why it matters:
        x
    Example:
        x
    Fix:
        x
    """


@pytest.mark.parametrize(
    "attrs, message",
    [
        ({"code": "TA1", "severity": Severity.INFO, "title": "t"}, "has no valid code"),
        ({"code": "ta997", "severity": Severity.INFO, "title": "t"}, "has no valid code"),
        ({"severity": Severity.INFO, "title": "t"}, "has no valid code"),
        ({"code": "TA997", "severity": "info", "title": "t"}, "needs a severity and a title"),
        ({"code": "TA997", "severity": Severity.INFO, "title": ""}, "needs a severity and a title"),
    ],
)
def test_register_rejects_a_bad_code_severity_or_title(attrs: dict, message: str) -> None:
    bad = type("Bad", (Rule,), {"__doc__": _DOCS, **attrs})
    with pytest.raises(TypeError, match=message):
        register(bad)
    assert "TA997" not in load_rules()


def test_rule_families_of_this_catalogue_cite_a_fact() -> None:
    for code, cls in load_rules().items():
        if code[:3] in ("TA1", "TA2", "TA4", "TA5") or code in ("TA308", "TA309", "TA602", "TA603", "TA604"):
            assert "torch" in cls.docs.fact, f"{code} cites no torch function in its Fact section"


def test_duplicate_codes_and_missing_docs_are_rejected() -> None:
    with pytest.raises(TypeError, match="duplicate rule code TA101"):

        @register
        class Again(Rule):
            """
            What it finds:
                x
            Why it matters:
                x
            Example:
                x
            Fix:
                x
            """

            code = "TA101"
            severity = Severity.INFO
            title = "again"

    with pytest.raises(TypeError, match="docs lack: Fix"):

        @register
        class NoFix(Rule):
            """
            What it finds:
                x
            Why it matters:
                x
            Example:
                x
            """

            code = "TA998"
            severity = Severity.INFO
            title = "no fix"

    assert "TA998" not in load_rules()


def test_rules_command_lists_every_code() -> None:
    out = runner.invoke(app, ["rules", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    codes = [r["code"] for r in data]
    assert sorted(codes) == codes  # in code order
    assert set(CATALOGUE) <= set(codes)
    table = runner.invoke(app, ["rules"])
    assert table.exit_code == 0
    for code in CATALOGUE:
        assert code in table.stdout


@pytest.mark.parametrize("code", CATALOGUE)
def test_rule_command_prints_the_docs(code: str) -> None:
    out = runner.invoke(app, ["rule", code.lower()])
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith(code)
    for heading in DOC_HEADINGS:
        assert f"\n{heading}\n" in out.stdout


def test_unknown_rule_code_is_one_line_exit_2() -> None:
    out = runner.invoke(app, ["rule", "TA999"])
    assert out.exit_code == 2
    assert out.output.strip().count("\n") == 0 and "unknown rule code 'TA999'" in out.output
