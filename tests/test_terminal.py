"""The terminal summary: grouped by severity, file:line, code, module, one-line fix."""

from __future__ import annotations

from torchaudit.report import Finding, Location, Report, Severity
from torchaudit.reports.terminal import print_summary


def _finding(rule: str, severity: Severity, module: str, line: int | None) -> Finding:
    return Finding(
        rule=rule,
        severity=severity,
        title="t",
        message=f"{rule} message",
        module=module,
        location=Location("model.py", line) if line else None,
        fix=f"{rule} fix",
    )


def test_grouped_by_severity_with_location_code_module_and_fix(capsys) -> None:
    findings = [_finding("TA101", Severity.ERROR, "block", 18)]
    findings += [_finding("TA106", Severity.WARNING, "", None)]
    findings += [_finding("TA107", Severity.INFO, f"layers.{i}.drop", 10 + i) for i in range(9)]
    report = Report(target={"spec": "model.py"}, environment={}, graph=None, findings=findings, comparisons=[])
    print_summary(report)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "torchaudit: model.py"
    assert out[1] == "errors (1)"
    assert out[2] == "  model.py:18  TA101  block  TA101 message"
    assert out[3] == "      fix: TA101 fix"
    assert out[4] == "warnings (1)" and out[5] == "  <model>  TA106  <root>  TA106 message"
    assert out[7] == "infos (9)"
    # an inventory of nine layers is one line for its rule, so it never buries the error
    assert out[8] == "  TA107 \u00d79  t: layers.0.drop, layers.1.drop, layers.2.drop, layers.3.drop, layers.4.drop and 4 more"
    assert out[-1] == "FAIL: 1 errors, 1 warnings, 9 infos (fail on error)"


def test_many_warnings_of_one_rule_show_three_and_a_count_and_verbose_shows_all(capsys) -> None:
    findings = [_finding("TA401", Severity.WARNING, f"layers.{i}", 10 + i) for i in range(9)]
    report = Report(target={"spec": "model.py"}, environment={}, graph=None, findings=findings, comparisons=[])
    print_summary(report)
    out = capsys.readouterr().out.splitlines()
    assert sum("TA401  layers." in line for line in out) == 3
    assert "  ... and 6 more TA401 (see --json)" in out
    print_summary(report, detail="verbose")
    assert sum("TA401  layers." in line for line in capsys.readouterr().out.splitlines()) == 9


def test_quiet_prints_the_errors_and_the_verdict_only(capsys) -> None:
    findings = [_finding("TA101", Severity.ERROR, "block", 18), _finding("TA106", Severity.WARNING, "", None),
                _finding("TA107", Severity.INFO, "drop", 10)]
    report = Report(target={"spec": "model.py"}, environment={}, graph=None, findings=findings, comparisons=[])
    print_summary(report, detail="quiet")
    out = capsys.readouterr().out.splitlines()
    assert out == ["torchaudit: model.py", "errors (1)", "  model.py:18  TA101  block  TA101 message", "      fix: TA101 fix",
                   "FAIL: 1 errors, 1 warnings, 1 infos (fail on error)"]


def test_comparisons_skipped_for_one_reason_share_a_line():
    import torch.nn as nn

    import torchaudit
    from torchaudit.reports.terminal import comparison_lines

    report = torchaudit.scan(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1)))  # no example inputs
    lines = comparison_lines(report)
    assert len(lines) == 1
    assert lines[0].startswith("compare dtype, device, reload, mode, determinism, batch: skipped (no example inputs")
    assert "--input-shape" in lines[0]
