"""A node is blamed for error beyond what rounding its inputs explains, relative to what the op
combined, not to its own (possibly near-zero) output: a harmless mean of centred values is not
the cause; the square that overflows float16 is."""

import pytest
import torch

import torchaudit
from tests.dynamic import models as M


def _scan(cand):
    torch.manual_seed(0)
    model = M.NormThenOverflow().eval()
    report = torchaudit.scan(model, example_inputs=torch.randn(4, 16), compare=["dtype"],
                             reference="cpu:float32", candidate=f"cpu:{cand}")
    [c] = [c for c in report.comparisons if c.name == "custom"]
    return report, c


def test_a_near_zero_mean_is_not_blamed_in_bfloat16():
    report, c = _scan("bfloat16")
    assert c.status.value == "matched", c.first_divergence
    assert "TA704" not in {f.rule for f in report.findings}


def test_the_float16_overflow_is_blamed_not_the_mean_before_it():
    report, c = _scan("float16")
    d = c.first_divergence
    assert d is not None and d.op in ("pow", "aten.pow"), d
    assert {f.node for f in report.findings if f.rule in ("TA704", "TA706")} == {d.node}


@pytest.mark.parametrize("cand", ["bfloat16", "float16"])
def test_the_reference_in_float32_judges_rounding_like_float64_does(cand):
    """Same verdict as with the float64 arbiter: float32 resolves bfloat16's and float16's rounding."""
    torch.manual_seed(0)
    model = M.NormThenOverflow().eval()
    ref64 = torchaudit.scan(model, example_inputs=torch.randn(4, 16), compare=["dtype"],
                            reference="cpu:float64", candidate=f"cpu:{cand}")
    [c64] = [c for c in ref64.comparisons if c.name == "custom"]
    _, c32 = _scan(cand)
    assert (c64.first_divergence and c64.first_divergence.node) == (c32.first_divergence and c32.first_divergence.node)
