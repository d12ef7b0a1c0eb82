"""Whose failure is it? A comparison during which the model's own code raised is TA904, pointing
at the model's line; one where torchaudit itself failed is TA903, asking for a report; what the
engine could not do at a node reaches the report as a note."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

import torchaudit
from tests.dynamic import models as M
from torchaudit.analyzer.compare import comparisons
from torchaudit.reports.json_report import render_json
from torchaudit.reports.terminal import comparison_lines


class RefusesTrainMode(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError("this model only runs in eval mode")  # the model's own line
        return self.fc(x)


RAISE_LINE = RefusesTrainMode.forward.__code__.co_firstlineno + 2


def _by_rule(report, code):
    return [f for f in report.findings if f.rule == code]


def test_the_models_own_exception_is_ta904_at_its_line():
    report = torchaudit.scan(RefusesTrainMode().eval(), torch.randn(4, 8), compare=["reload", "dtype"])
    status = {c.name: c.status.value for c in report.comparisons}
    assert status == {"reload": "error", "dtype": "matched"}  # reload exercises the model in train mode
    [finding] = _by_rule(report, "TA904")
    assert "this model only runs in eval mode" in finding.message and "'reload'" in finding.message
    assert finding.location is not None and finding.location.line == RAISE_LINE
    assert finding.location.file.endswith("test_failures.py")
    assert not _by_rule(report, "TA903")  # not torchaudit's failure: no bug report asked for
    # the user asked for reload: a check that did not run fails the gate; chosen by auto, it warns
    assert finding.severity.value == "error" and report.exit_code == 1
    auto = torchaudit.scan(RefusesTrainMode().eval(), torch.randn(4, 8))
    assert [f.severity.value for f in _by_rule(auto, "TA904")] == ["warning", "warning"]  # reload and mode
    assert auto.exit_code == 0


def test_a_failure_inside_torchaudit_is_ta903_asking_for_a_report(monkeypatch: pytest.MonkeyPatch):
    # a bug planted inside torchaudit's own code (a function of this test would count as the model's)
    monkeypatch.setattr(comparisons, "placed", None)
    report = torchaudit.scan(nn.Linear(8, 8).eval(), torch.randn(4, 8), compare=["mode"])
    [finding] = _by_rule(report, "TA903")
    assert "TypeError" in finding.message and "report the model to torchaudit" in finding.fix
    assert not _by_rule(report, "TA904")


class Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))


def test_a_model_that_runs_everywhere_has_neither():
    model = Plain().eval()
    report = torchaudit.scan(model, torch.randn(4, 8))
    assert not _by_rule(report, "TA903") and not _by_rule(report, "TA904")
    assert all(c.status.value in ("matched", "skipped") for c in report.comparisons)


def test_engine_notes_reach_every_report():
    report = torchaudit.scan(M.NeedsABatch().eval(), torch.randn(4, 8), compare=["batch"])
    [batch] = report.comparisons
    assert batch.notes and "could not run" in batch.notes[0]
    assert json.loads(render_json(report))["comparisons"][0]["notes"] == list(batch.notes)
    assert any(line.strip().startswith("note:") and batch.notes[0] in line for line in comparison_lines(report))


def test_a_model_with_float64_layers_behind_float32_inputs_runs_every_comparison_as_it_is():
    from tests.conftest import FIXTURES

    report = torchaudit.scan(str(FIXTURES / "rules" / "ta403_float64_majority.py"))
    status = {c.name: c.status.value for c in report.comparisons}
    assert set(status.values()) <= {"matched", "skipped"}, status
    assert status["dtype"] == "matched" and status["mode"] == "matched"
    assert [c.candidate.dtype for c in report.comparisons if c.name == "dtype"] == ["float32"]
    assert not _by_rule(report, "TA903") and not _by_rule(report, "TA904")


def test_code_of_an_installed_package_is_the_models_and_the_standard_library_is_not():
    import sysconfig
    from pathlib import Path

    from torchaudit.analyzer.compare.stage import model_frame

    # transformers lives in site-packages, which lies inside the standard library's folder:
    # its frames are the model's code, the standard library's own are not
    fake = str(Path(sysconfig.get_paths()["purelib"]) / "somepkg" / "modeling_some.py")
    space: dict[str, object] = {}
    code = "def forward():\n    raise ValueError('model code')\ntry:\n    forward()\nexcept ValueError as e:\n    caught = e\n"
    exec(compile(code, fake, "exec"), space)  # raised and caught in the package's own frames
    where = model_frame(space["caught"])  # type: ignore[arg-type]
    assert where is not None and where.file == fake and where.line == 2
    try:
        import json

        json.loads("{")
    except ValueError as exc:
        assert model_frame(exc) is not None and model_frame(exc).file.endswith("test_failures.py")  # stdlib frames skipped


def test_nan_or_inf_only_in_the_float64_arbiter_is_a_note_not_ta706():
    """transformers' T5 runs softmax(scores.float()): its float64 reference turns the
    finfo(float64).min mask into -inf, which softmax absorbs; the float32 model never has it.
    (Checked end to end on T5 by hand: the dtype comparison is matched, with the note.)"""
    import networkx as nx

    from torchaudit.analyzer.compare.lockstep import LockstepResult, record
    from torchaudit.analyzer.compare.metrics import Tolerance
    from torchaudit.analyzer.trace.graph import ModelGraph

    info = ModelGraph("fx", nx.DiGraph(), [])
    tol = Tolerance.for_dtype(torch.float32)
    ref = torch.tensor([0.5, float("-inf")])  # the reference's scores.float(): -inf
    cand = torch.tensor([0.5, -3.4e38])  # the candidate's: finite

    def first(arbiter: bool, kind: str) -> LockstepResult:
        result = LockstepResult(arbiter=arbiter)
        record(result, info, "float_5", kind, "float", ref, cand, cand, tol, torch.float32, k=2)
        return result

    inside = first(True, "call_method")  # float64 reference, inside the model: a note
    assert inside.first_nonfinite is None and inside.arbiter_nonfinite == "float_5"
    assert inside.notes and "higher-precision reference only" in inside.notes[0]
    same_dtype = first(False, "call_method")  # either side of a same-dtype comparison is the user's
    assert same_dtype.first_nonfinite is not None and same_dtype.first_nonfinite["in"] == "reference"
    at_output = first(True, "output")  # reaching an output is always reported
    assert at_output.first_nonfinite is not None


class HardCodedFloat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x).float()  # float32 whatever the model's dtype
        return self.fc2(h)  # float32 input, float64 weight in the float64 reference


def test_an_op_of_the_models_graph_that_fails_on_its_own_values_is_ta904_at_its_line():
    """Run node by node, the failing op has no frame of the model's code in the traceback: the
    graph node's own source line says whose failure it is."""
    report = torchaudit.scan(HardCodedFloat().eval(), torch.randn(4, 8), compare=["dtype"])
    assert {c.name: c.status.value for c in report.comparisons} == {"dtype": "error"}
    [finding] = _by_rule(report, "TA904")
    assert finding.location is not None and finding.location.file.endswith("test_failures.py")
    assert finding.location.line == HardCodedFloat.forward.__code__.co_firstlineno + 2
    assert not _by_rule(report, "TA903")
