"""The pytest plugin (torchaudit/pytest_plugin.py), registered through the pytest11 entry point:
the ``torchaudit`` fixture, the ``torchaudit`` marker, ``--torchaudit-reports`` and the table
``assert_consistent`` failures show, in one pytester session on tiny models.

The session runs in a fresh interpreter (``runpytest_subprocess``): pytester's in-process runs
drop the modules a run imported when it ends, and torch does not survive being imported twice."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

MODELS = textwrap.dedent(
    """\
    import torch
    import torch.nn as nn
    import torch.nn.functional as F


    class Good(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x)


    class AlwaysDropout(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(F.dropout(x, 0.5))


    class Counter(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.fc(x) * self.calls
    """
)


TESTS = textwrap.dedent(
    """\
    import pytest
    import torch
    from tiny_models import AlwaysDropout, Counter, Good

    CLEANED = []


    def test_fixture_good(torchaudit):
        report = torchaudit.scan(Good().eval(), torch.randn(2, 4), compare=["dtype"])
        assert report.summary.verdict == "pass"


    def test_fixture_bad(torchaudit):
        torchaudit.scan(AlwaysDropout().eval(), torch.randn(2, 4), static_only=True)


    def test_fixture_unchecked(torchaudit):
        assert torchaudit.scan(AlwaysDropout().eval(), static_only=True, check=False).exit_code == 1


    def test_fails_later(torchaudit):
        torchaudit.scan(Good().eval(), static_only=True)
        assert False, "something else"


    def test_reload(torchaudit):
        trained = Counter()
        for _ in range(3):
            trained(torch.randn(2, 4))
        reloaded = Counter()
        reloaded.load_state_dict(trained.state_dict())
        torchaudit.assert_consistent(trained.eval(), reloaded.eval(), torch.randn(2, 4))


    @pytest.mark.torchaudit(compare=["dtype"], fail_on="error")
    def test_marked_returns_good():
        return Good().eval(), torch.randn(2, 4)


    @pytest.mark.torchaudit(static_only=True)
    @pytest.mark.parametrize("width", [4])
    def test_marked_yields_bad(width):
        yield AlwaysDropout().eval()
        CLEANED.append(width)


    def test_marked_cleanup_ran():
        assert CLEANED == [4]


    @pytest.mark.torchaudit
    def test_marked_returns_nothing():
        pass
    """
)


def test_the_plugin_is_registered_on_install() -> None:
    found = [e for e in entry_points(group="pytest11") if e.value == "torchaudit.pytest_plugin"]
    assert [e.name for e in found] == ["torchaudit"]


def test_gate_message_names_the_findings_the_comparisons_and_the_report(tmp_path: Path) -> None:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    import torchaudit
    from torchaudit.pytest_plugin import failure_message

    class Net(nn.Module):
        def forward(self, x):
            return F.dropout(x, 0.5)

    report = torchaudit.scan(Net().eval(), torch.randn(2, 4), compare=["determinism"])
    text = failure_message(report, tmp_path / "scan-1.html")
    lines = text.splitlines()
    assert lines[0].startswith("torchaudit: Net FAIL: 2 findings at or above error fail the gate (--fail-on error)")
    assert any(line.strip().startswith("tests/test_pytest_plugin.py:") and "TA101  <root>  F.dropout" in line for line in lines)
    assert "  compare determinism: diverged at dropout (<root>, dropout)" in lines
    assert "first divergence (determinism: cpu:float32:eval vs cpu:float32:eval)" in lines
    assert lines[-1] == f"HTML report: {tmp_path / 'scan-1.html'}"


@pytest.mark.slow  # a pytest session in a fresh interpreter that imports torch
def test_fixture_marker_reports_and_divergence_table_in_a_session(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(tiny_models=MODELS, test_models=TESTS)
    keep = tmp_path / "kept"
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider", "--torchaudit-reports", str(keep))
    result.assert_outcomes(passed=4, failed=5)
    out = result.stdout.str()
    # the fixture: the gate's reason, the fix and the HTML in the test's tmp_path
    result.stdout.fnmatch_lines([
        "*AuditFailed: torchaudit: AlwaysDropout FAIL: 1 finding at or above error fails the gate*",
        "E*tiny_models.py:21:24  TA101  <root>  F.dropout is called without training=self.training*",
        "E*fix: pass training=self.training to F.dropout*",
        "E*HTML report: *test_fixture_bad0/torchaudit/scan-1.html",
    ])
    html = Path(out.split("HTML report: ", 1)[1].split()[0])
    assert html.read_text().lstrip().lower().startswith("<!doctype html>")
    # assert_consistent: the first divergence as a table
    result.stdout.fnmatch_lines([
        "*InconsistentModels: models diverge first at node 'mul' (mul)*state that differs: calls (python_attribute)*",
        "E*first divergence (models: cpu:float32:eval vs cpu:float32:eval)",
        "E*node       mul (mul)",
        "E*module     <root>",
        "E*source     tiny_models.py:32",
        "E*max abs    max rel",
        "E*local      *",
        "E*inherited  0          0",
        "E*total      *",
    ])
    # the marker: a returned model passes, a yielded one fails and still cleans up, None is refused
    result.stdout.fnmatch_lines(["*test_marked_returns_nothing is marked torchaudit but returned NoneType: return or yield*"])
    result.stdout.fnmatch_lines(["*_ test_marked_yields_bad?4? _*", "torchaudit: AlwaysDropout FAIL: 1 finding at or above error*"])
    assert "PytestReturnNotNoneWarning" not in out
    # --torchaudit-reports: the HTML of each failing test that scanned, and of no passing one
    assert sorted(p.name for p in keep.iterdir()) == [
        "test_models.py_test_fails_later.html", "test_models.py_test_fixture_bad.html",
        "test_models.py_test_marked_yields_bad_4.html",
    ]
    result.stdout.fnmatch_lines(["*torchaudit reports*", f"{keep}/test_models.py_test_fails_later.html"])


@pytest.mark.slow  # a fresh interpreter
def test_the_plugin_imports_no_torch_at_start_up(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    import sys\n    assert 'torch' not in sys.modules\n")
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    done = subprocess.run([sys.executable, "-c", "import sys, torchaudit.pytest_plugin; print(sorted(m for m in "
                           "('torch', 'numpy', 'networkx') if m in sys.modules))"], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr
