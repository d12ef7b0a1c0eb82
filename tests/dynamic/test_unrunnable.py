"""Comparisons that cannot run on a model say why (status skipped), rather than crash (TA903)."""

import torch
import torch.nn as nn

import torchaudit


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def _by_name(report):
    return {c.name: c for c in report.comparisons}


class HalfThenFloat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x.to(self.fc1.weight.dtype))
        return self.fc2(h.to(self.fc2.weight.dtype))


def test_reload_of_a_model_converted_whole_after_construction_is_rebuilt_in_its_dtype():
    model = Net().half().eval()  # Net() rebuilds it in float32; converted the same way, it matches
    report = torchaudit.scan(model, example_inputs=torch.randn(4, 8).half(), compare=["reload"])
    reload = _by_name(report)["reload"]
    assert reload.status.value == "matched", reload.skipped_reason
    assert reload.reference.dtype == "float16"


def test_reload_of_a_model_converted_layer_by_layer_is_skipped_with_the_fix():
    model = HalfThenFloat().eval()
    model.fc1.half()  # one layer converted after construction: no rebuild can know it
    report = torchaudit.scan(model, example_inputs=torch.randn(4, 8).half())  # auto
    reload = _by_name(report)["reload"]
    assert reload.status.value == "skipped"
    assert "float32" in reload.skipped_reason and "float16" in reload.skipped_reason and "fresh_model()" in reload.skipped_reason
    assert "TA903" not in {f.rule for f in report.findings}
    # named explicitly, a comparison that cannot run is a TA903 error carrying the same reason: the gate fails
    named = torchaudit.scan(model, example_inputs=torch.randn(4, 8).half(), compare=["reload"])
    assert [f.message for f in named.findings if f.rule == "TA903"] == [f"comparison 'reload' could not run: {reload.skipped_reason}"]
    assert [f.severity.value for f in named.findings if f.rule == "TA903"] == ["error"] and named.exit_code == 1


def test_a_parameter_on_the_meta_device_skips_every_comparison_by_name():
    model = Net().eval()
    model.extra = nn.Linear(8, 8, device="meta")
    report = torchaudit.scan(model, example_inputs=torch.randn(4, 8), compare=["auto"])
    for result in report.comparisons:
        assert result.status.value == "skipped" and "extra.weight" in result.skipped_reason
    assert "TA903" not in {f.rule for f in report.findings}
