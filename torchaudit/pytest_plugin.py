"""torchaudit's pytest plugin, registered on install (the ``pytest11`` entry point).

- The ``torchaudit`` fixture: ``torchaudit.scan(model, example_inputs, compare=[...],
  fail_on="error")`` scans like :func:`torchaudit.scan` and fails the test with a readable
  message (the findings that fail the gate, each comparison, the first divergence as a table
  and the HTML report, written to the test's ``tmp_path``) when the gate fails; ``check=False``
  returns the report instead. ``torchaudit.compare`` and ``torchaudit.assert_consistent`` are
  the library's.
- The marker ``@pytest.mark.torchaudit(compare=[...], fail_on="error", ...)`` on a test that
  returns or yields a model (an ``nn.Module``, or ``(model, example_inputs)``): the model is
  scanned with the marker's keyword arguments (those of :func:`torchaudit.scan`), then a
  generator test resumes for its clean-up.
- ``--torchaudit-reports DIR`` keeps the HTML report of every scan of each failing test in DIR
  (``<test id>.html``, ``-2``, ... for further scans of one test).
- ``assert_consistent`` failures carry a table of the first divergence (node, module, source
  line; local, inherited and total error) in their message.

Nothing here imports torch until a test uses the fixture or the marker: a test session that
never does pays nothing for the plugin.
"""

from __future__ import annotations

import functools
import inspect
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterator, Mapping

import pytest

if TYPE_CHECKING:
    from torchaudit.report import Report

MARKER = "torchaudit"
_SCANS = pytest.StashKey[list["Scan"]]()


class AuditFailed(AssertionError):
    """A scan's gate failed (a finding at or above ``fail_on``); ``report`` is the scan's."""

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message)
        self.report = report


class Scan:
    """One scan made in a test: its report, and where its HTML was written (if yet)."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.html: Path | None = None

    def write_html(self, path: Path) -> Path:
        self.report.write(path, "html")
        self.html = path
        return path


class Auditor:
    """What the ``torchaudit`` fixture gives a test."""

    def __init__(self, node: pytest.Item, tmp_path: Path) -> None:
        self._node = node
        self._dir = tmp_path / "torchaudit"

    def scan(self, model: Any, example_inputs: Any = None, *, check: bool = True, **options: Any) -> Report:
        """:func:`torchaudit.scan` (same arguments); with ``check`` (default), fail the test
        when the gate fails, with the findings and comparisons that say why and the HTML report."""
        __tracebackhide__ = True
        import torchaudit

        report = torchaudit.scan(model, example_inputs, **options)
        scans = self._node.stash.setdefault(_SCANS, [])
        scan = Scan(report)
        scans.append(scan)
        if check and report.summary.verdict == "fail":
            html = scan.write_html(self._dir / f"scan-{len(scans)}.html")
            raise AuditFailed(failure_message(report, html), report)
        return report

    def compare(self, reference_model: Any, candidate_model: Any, example_inputs: Any, **options: Any) -> Any:
        """:func:`torchaudit.compare`."""
        import torchaudit

        return torchaudit.compare(reference_model, candidate_model, example_inputs, **options)

    def assert_consistent(self, reference_model: Any, candidate_model: Any, example_inputs: Any, **options: Any) -> Any:
        """:func:`torchaudit.assert_consistent`: its failure shows a table of the first divergence."""
        __tracebackhide__ = True
        import torchaudit

        return torchaudit.assert_consistent(reference_model, candidate_model, example_inputs, **options)


def failure_message(report: Report, html: Path | None) -> str:
    """Why a scan fails its gate, for a test's output: the verdict, the findings at or above
    the gate with their fixes, the comparisons, each first divergence as a table, the HTML."""
    from torchaudit.reports import wording as w
    from torchaudit.reports.divergence_table import divergence_table
    from torchaudit.reports.terminal import comparison_lines

    s = report.summary
    lines = [f"torchaudit: {w.target_name(report)} FAIL: {w.verdict_sentence(report)}"]
    for f in w.failing(report):
        lines.append(f"  {w.where(f.location, f.module)}  {f.rule}  {w.module_name(f.module)}  {f.message}")
        if f.fix:
            lines.append(f"      fix: {f.fix}")
    lines += [f"  {line}" for line in comparison_lines(report)]
    for c in report.comparisons:
        if c.first_divergence is not None and not c.expected_difference:
            lines += ["", divergence_table(c)]
    lines.append(f"counts: {s.errors} errors, {s.warnings} warnings, {s.infos} infos (fail on {s.fail_on})")
    if html is not None:
        lines.append(f"HTML report: {html}")
    return "\n".join(lines)


# --- hooks -----------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchaudit", "torchaudit (PyTorch model audits)")
    group.addoption("--torchaudit-reports", metavar="DIR", default=None,
                    help="Keep the HTML report of every torchaudit scan of each failing test in DIR.")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(compare=[...], fail_on='error', **options): scan the model the test returns or yields "
        "(an nn.Module, or (model, example_inputs)) with torchaudit.scan(model, **options); fail when the gate fails.",
    )


@pytest.fixture
def torchaudit(request: pytest.FixtureRequest, tmp_path: Path) -> Auditor:
    """``torchaudit.scan(model, ...)`` that fails the test when the gate fails (HTML in tmp_path)."""
    assert isinstance(request.node, pytest.Item)
    return Auditor(request.node, tmp_path)


def _marked(obj: object) -> bool:
    marks = getattr(obj, "pytestmark", [])
    return any(getattr(m, "name", None) == MARKER for m in (marks if isinstance(marks, list) else [marks]))


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Module | pytest.Class, name: str, obj: object) -> Any:
    """A generator test marked ``torchaudit`` (pytest refuses generator tests) is collected as a
    function that returns its generator, which :func:`pytest_pyfunc_call` drives."""
    if not (inspect.isgeneratorfunction(obj) and _marked(obj) and collector.istestfunction(obj, name)):
        return None
    assert callable(obj)

    @functools.wraps(obj)
    def returns_generator(*args: Any, **kwargs: Any) -> Any:
        return obj(*args, **kwargs)

    genfunctions = getattr(collector, "_genfunctions", None)  # what pytest itself uses: parametrize included
    if genfunctions is not None:
        return list(genfunctions(name, returns_generator))
    return pytest.Function.from_parent(collector, name=name, callobj=returns_generator)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A marked test gets the ``torchaudit`` fixture (its scan needs a ``tmp_path``)."""
    for item in items:
        if item.get_closest_marker(MARKER) is not None and isinstance(item, pytest.Function):
            if "torchaudit" not in item.fixturenames:
                item.fixturenames.append("torchaudit")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    marker = pyfuncitem.get_closest_marker(MARKER)
    if marker is None:
        return None
    function: Callable[..., Any] = pyfuncitem.obj
    wanted = inspect.signature(function).parameters
    result = function(**{k: v for k, v in pyfuncitem.funcargs.items() if k in wanted})
    auditor = pyfuncitem.funcargs["torchaudit"]
    assert isinstance(auditor, Auditor)
    if inspect.isgenerator(result):
        _drive(result, auditor, marker.kwargs, pyfuncitem.nodeid)
    else:
        _scan_result(result, auditor, marker.kwargs, pyfuncitem.nodeid)
    return True


def _drive(gen: Iterator[Any], auditor: Auditor, options: Mapping[str, Any], nodeid: str) -> None:
    try:
        yielded = next(gen)
    except StopIteration:
        pytest.fail(f"{nodeid} is marked torchaudit but yields nothing: yield the model to scan", pytrace=False)
    try:
        _scan_result(yielded, auditor, options, nodeid)
    finally:
        try:
            next(gen)  # the test's clean-up after its yield
        except StopIteration:
            pass
        else:
            pytest.fail(f"{nodeid} is marked torchaudit and yields more than once: yield one model", pytrace=False)


def _scan_result(result: Any, auditor: Auditor, options: Mapping[str, Any], nodeid: str) -> None:
    import torch.nn as nn

    model, inputs = (result if isinstance(result, tuple) and len(result) == 2 else (result, None))
    if not isinstance(model, nn.Module):
        pytest.fail(f"{nodeid} is marked torchaudit but returned {type(result).__name__}: return or yield an nn.Module, "
                    "or (model, example_inputs)", pytrace=False)
    try:
        auditor.scan(model, inputs, **options)
        return
    except AuditFailed as exc:  # the test's own code has returned: a traceback would show the plugin's
        message = str(exc)
    pytest.fail(message, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    keep = item.config.getoption("torchaudit_reports")
    scans = item.stash.get(_SCANS, [])
    if keep and scans and report.when == "call" and report.failed:
        folder = Path(keep)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid).strip("_")
        kept = [scan.write_html(folder / f"{stem}{'' if i == 0 else f'-{i + 1}'}.html") for i, scan in enumerate(scans)]
        report.sections.append(("torchaudit reports", "\n".join(str(p) for p in kept)))
    return report
