"""The issue's scenarios on small models of our own, through the public ``torchaudit.scan``."""

import pytest
import torch

import torchaudit
from tests.dynamic import models as M


def _line_of(text):
    """The line of ``tests/dynamic/models.py`` holding ``text`` (1-based)."""
    lines = open(M.__file__, encoding="utf-8").read().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def _scan(model, x, *names, **kw):
    return torchaudit.scan(model, example_inputs=x, compare=list(names), **kw)


def _one(report, name):
    [c] = [c for c in report.comparisons if c.name == name]
    return c


def _codes(report):
    return sorted({f.rule for f in report.findings})


def _trained_linear_bn():
    torch.manual_seed(0)
    model = M.LinearBN()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(5):
        x = torch.randn(16, 6)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_reload_of_trained_linear_batchnorm_matches():
    model = _trained_linear_bn()
    report = _scan(model, torch.randn(8, 6), "reload")
    c = _one(report, "reload")
    assert c.status.value == "matched", c
    assert c.state_diff == ()
    assert "TA701" not in _codes(report)
    assert len(c.nodes) >= 5 and c.output["close"]


@pytest.mark.parametrize(
    "cls, module, name, kind",
    [
        (M.NonPersistentBuffer, "count", "count.seen", "non_persistent_buffer"),
        (M.TensorAttribute, "scaler", "scaler.scale", "tensor_attribute"),
        (M.PythonCounter, "head", "head.calls", "python_attribute"),
    ],
)
def test_reload_pins_state_the_state_dict_loses(cls, module, name, kind):
    torch.manual_seed(0)
    report = _scan(cls().eval(), torch.randn(8, 6), "reload")
    c = _one(report, "reload")
    assert c.status.value == "diverged"
    assert c.first_divergence.module == module
    assert [(d.name, d.kind) for d in c.state_diff] == [(name, kind)]
    [f] = [f for f in report.findings if f.rule == "TA701"]
    assert f.module == module and name in f.message and f.severity.value == "error"
    assert report.exit_code == 1


def test_functional_dropout_in_eval_is_nondeterministic_at_that_node():
    report = _scan(M.AlwaysDropout().eval(), torch.randn(8, 6), "determinism")
    c = _one(report, "determinism")
    assert c.status.value == "diverged"
    assert c.first_divergence.node == "dropout"
    assert c.first_divergence.location.line == _line_of("F.dropout(self.fc(x), 0.3)")
    [f] = [f for f in report.findings if f.rule == "TA702"]
    assert f.node == "dropout" and f.location.file.endswith("models.py")


def test_batchnorm_without_running_stats_mixes_samples():
    report = _scan(M.BatchStats().eval(), torch.randn(8, 6), "batch")
    c = _one(report, "batch")
    assert c.status.value == "diverged"
    assert c.first_divergence.node == "norm" and c.first_divergence.module == "norm"
    [f] = [f for f in report.findings if f.rule == "TA703"]
    assert f.module == "norm" and f.severity.value == "warning"


def test_batchnorm2d_without_running_stats_mixes_samples():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4, track_running_stats=False), torch.nn.ReLU())
    c = _one(_scan(model.eval(), torch.randn(4, 3, 8, 8), "batch"), "batch")
    assert c.status.value == "diverged" and c.first_divergence.module == "1"
    assert c.first_divergence.local.max_abs > 1e-3  # real numbers: each sample alone could run


def test_float16_exp_overflow_is_first_nonfinite_in_dtype():
    model = M.ExpOverflow().half().eval()
    report = _scan(model, torch.ones(2, 4).half(), "dtype")
    c = _one(report, "dtype")
    assert c.reference.dtype == "float64" and c.candidate.dtype == "float16"
    assert c.first_nonfinite["node"] == "exp" and c.first_nonfinite["in"] == "candidate"
    [f] = [f for f in report.findings if f.rule == "TA706"]
    assert f.node == "exp" and f.location.line == _line_of("torch.exp(h)")


@pytest.mark.parametrize("cls, shape", [(M.SmallCNN, (4, 3, 8, 8)), (M.SmallTransformer, (3, 16, 8)), (M.LinearBN, (8, 6))])
def test_no_false_alarms_on_clean_float32_models(cls, shape):
    torch.manual_seed(0)
    report = _scan(cls().eval(), torch.randn(*shape), "dtype", "reload", "determinism", "batch")
    statuses = {c.name: c.status.value for c in report.comparisons}
    assert statuses == {"dtype": "matched", "reload": "matched", "determinism": "matched", "batch": "matched"}
    assert not any(f.rule.startswith("TA7") or f.rule == "TA903" for f in report.findings)
    dtype = _one(report, "dtype")
    assert any(n.local.max_abs > 0 for n in dtype.nodes)  # float32 rounding is there, just not a divergence


def test_mode_lists_the_mode_dependent_nodes_as_info():
    report = _scan(M.LinearBN().eval(), torch.randn(8, 6), "mode")
    c = _one(report, "mode")
    assert c.status.value == "diverged" and c.first_divergence.module == "bn"
    ta707 = [f for f in report.findings if f.rule == "TA707"]
    assert [f.module for f in ta707] == ["bn"]
    assert all(f.severity.value == "info" for f in ta707)
    assert report.exit_code == 0  # an expected eval/train difference never fails the gate


def test_custom_configs_on_cpu_cover_the_device_path():
    report = _scan(M.SmallCNN().eval(), torch.randn(2, 3, 8, 8), reference="cpu:float32:eval", candidate="cpu:float32:eval")
    c = _one(report, "custom")
    assert c.status.value == "matched" and c.reference == c.candidate
    assert all(n.total.max_abs == 0.0 for n in c.nodes)


def test_no_inputs_skips_every_comparison_with_the_fixing_flag():
    report = torchaudit.scan(M.LinearBN())
    assert {c.name for c in report.comparisons} >= {"dtype", "reload", "mode", "determinism", "batch"}
    for c in report.comparisons:
        assert c.status.value == "skipped" and "--input-shape" in c.skipped_reason


def test_a_comparison_where_the_model_raises_becomes_ta904_and_the_others_go_on():
    class Exploding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            if self.training:
                raise RuntimeError("no training here")
            return self.fc(x)

    report = _scan(Exploding().eval(), torch.randn(4, 4), "mode", "determinism")
    assert _one(report, "mode").status.value == "error"
    assert _one(report, "determinism").status.value == "matched"
    # the model's own code raised (not torchaudit): TA904 at the model's line, no bug report asked for
    [f] = [f for f in report.findings if f.rule == "TA904"]
    assert "mode" in f.message and "no training here" in f.message
    assert f.location is not None and f.location.line == Exploding.forward.__code__.co_firstlineno + 2
    assert "TA903" not in _codes(report)


def test_static_only_runs_no_comparison():
    report = _scan(M.AlwaysDropout().eval(), torch.randn(8, 6), "determinism", static_only=True)
    assert report.comparisons == [] and "TA702" not in _codes(report)
