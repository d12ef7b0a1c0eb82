"""Values at a dtype's own limits (``torch.finfo(dtype).min`` masks) are the same thing in
every dtype: no false alarm where the float64 reference holds ``-1.8e308`` and the float32
candidate ``-3.4e38``, and no divergence is ever reported with an error inside tolerance."""

import json

import pytest
import torch

import torchaudit
from tests.dynamic import models as M
from torchaudit.analyzer.compare.lockstep import saturating_cast
from torchaudit.analyzer.compare.metrics import Tolerance, compare_values

F64_MIN, F32_MIN = torch.finfo(torch.float64).min, torch.finfo(torch.float32).min
CPU = torch.device("cpu")


def test_a_cast_reference_saturates_to_the_candidates_limit_and_keeps_real_infinities():
    ref = torch.tensor([F64_MIN, 1.5, 1e39, float("inf"), float("-inf")], dtype=torch.float64)
    out = saturating_cast(ref, torch.float32, CPU)
    assert out.tolist()[:3] == [F32_MIN, 1.5, torch.finfo(torch.float32).max]
    assert out.tolist()[3:] == [float("inf"), float("-inf")]
    assert torch.equal(saturating_cast(torch.tensor([1.0, 2.0]), torch.float16, CPU), torch.tensor([1.0, 2.0], dtype=torch.float16))


@pytest.mark.parametrize("cand", [F32_MIN, float("-inf")], ids=["finfo-min", "-inf"])
def test_a_value_at_its_dtypes_limit_matches_the_other_dtypes_limit(cand):
    tol = Tolerance.for_dtype(torch.float32)
    m = compare_values(torch.tensor([F64_MIN, 2.0], dtype=torch.float64), torch.tensor([cand, 2.0]), tol, torch.float32)
    assert m.mismatched == 0 and m.stats().max_abs == 0.0


def test_an_infinity_against_a_number_is_an_unbounded_error_not_zero():
    tol = Tolerance.for_dtype(torch.float16)
    m = compare_values(torch.tensor([7e4, 1.0]), torch.tensor([float("inf"), 1.0], dtype=torch.float16), tol, torch.float16)
    assert m.mismatched == 1 and m.stats().max_abs > 1e300


def test_a_transformers_style_causal_mask_is_no_false_alarm_in_the_dtype_comparison():
    torch.manual_seed(0)
    report = torchaudit.scan(M.CausalMask().eval(), example_inputs=torch.randn(2, 5, 8), compare=["dtype"])
    [c] = report.comparisons
    assert c.status.value == "matched", c.first_divergence
    assert not [f for f in report.findings if f.rule in ("TA704", "TA706")]


def _divergences_carry_error(data: dict) -> list[str]:
    """Every diverged node's own error is outside the tolerance its comparison states."""
    bad = []
    for c in data["comparisons"]:
        tol = c.get("tolerance") or {}
        for n in c.get("nodes", []):
            if n["diverged"] and not (n["local_max_abs"] > tol.get("atol", 0.0) and n.get("mismatch_fraction", 1) >= 0):
                bad.append(f"{c['name']}:{n['node']} local max abs {n['local_max_abs']}")
        fd = c.get("first_divergence")
        if fd and not fd["local"]["max_abs"] > tol.get("atol", 0.0):
            bad.append(f"{c['name']}: first divergence {fd['node']} local max abs {fd['local']['max_abs']}")
    return bad


@pytest.mark.parametrize("model, x", [
    (M.CausalMask, lambda: torch.randn(2, 5, 8)),
    (M.ExpOverflow, lambda: torch.randn(4, 4)),
    (M.SmallTransformer, lambda: torch.randn(2, 7, 8)),
], ids=["mask", "overflow", "transformer"])
def test_no_divergence_is_reported_with_an_error_inside_tolerance(model, x, tmp_path):
    torch.manual_seed(0)
    report = torchaudit.scan(model().eval(), example_inputs=x(), compare=["dtype", "mode", "batch"],
                             reference="cpu:float32", candidate="cpu:float16")
    out = tmp_path / "r.json"
    report.write(out)
    assert _divergences_carry_error(json.loads(out.read_text())) == []
    report.write(tmp_path / "r.md")
    assert "max abs 0," not in (tmp_path / "r.md").read_text()


@pytest.mark.slow
def test_opt_decoder_in_float32_against_float64_is_no_false_alarm(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.OPTConfig(hidden_size=32, num_hidden_layers=2, ffn_dim=37, num_attention_heads=2,
                                 vocab_size=100, max_position_embeddings=64, word_embed_proj_dim=32)
    model = transformers.OPTForCausalLM(cfg).eval()
    report = torchaudit.scan(model, example_inputs=torch.randint(0, 100, (2, 8)), compare=["dtype"])
    [c] = report.comparisons
    assert c.status.value == "matched", c.first_divergence
    assert not [f for f in report.findings if f.rule in ("TA704", "TA706")]


def test_a_model_that_takes_another_path_in_float16_is_compared_by_aligned_nodes():
    """The float16 graph has a clamp the float32 graph lacks: nodes are matched by module, op
    and occurrence, the comparison runs to the end and says what it could not match."""
    torch.manual_seed(0)
    report = torchaudit.scan(M.ClampInHalf().eval(), example_inputs=torch.randn(4, 8), compare=["dtype"],
                             reference="cpu:float32", candidate="cpu:float16")
    [c] = [c for c in report.comparisons if c.name == "custom"]
    assert c.status.value in ("matched", "accumulated"), (c.status, c.skipped_reason)
    assert any("graphs differ" in n for n in c.notes)
    ops = [n.op for n in c.nodes]
    assert ops[-1] == "output" and ops.count("aten.linear") + ops.count("Linear") == 3  # every layer, the last included
    assert not [op for op in ops if "clamp" in op]  # the candidate's own extra op has nothing to compare with
    assert not [f for f in report.findings if f.rule in ("TA903", "TA904")]


@pytest.mark.slow
def test_t5_in_float16_against_float32_runs(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.T5Model(transformers.T5Config(d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                                       vocab_size=100)).eval()
    g = torch.Generator().manual_seed(1)
    inputs = {"input_ids": torch.randint(0, 100, (2, 8), generator=g), "decoder_input_ids": torch.randint(0, 100, (2, 5), generator=g)}
    report = torchaudit.scan(model, example_inputs=inputs, compare=["batch"], reference="cpu:float32", candidate="cpu:float16")
    status = {c.name: c for c in report.comparisons}
    assert status["custom"].status.value in ("matched", "accumulated", "diverged"), status["custom"].skipped_reason
    assert len(status["custom"].nodes) > 100 and status["custom"].output
    assert status["batch"].status.value == "matched", status["batch"].skipped_reason
    assert not [f for f in report.findings if f.rule in ("TA903", "TA904")]
