"""A comparison is ``matched`` only when the outputs are within tolerance: error that adds up
over many nodes, or enters between the nodes compared, is ``accumulated`` with the nodes that
add most of it (TA708), never a green pass."""

import copy
import json

import pytest
import torch

import torchaudit
from tests.dynamic import models as M


def _deep():
    torch.manual_seed(0)
    return M.DeepResidual().eval(), torch.randn(4, 32, generator=torch.Generator().manual_seed(1))


def test_drift_over_forty_bfloat16_blocks_is_accumulated_not_matched(tmp_path):
    model, x = _deep()
    report = torchaudit.scan(model, example_inputs=x, compare=["dtype"], reference="cpu:float64", candidate="cpu:bfloat16",
                             fail_on="warning")
    [c] = [c for c in report.comparisons if c.name == "custom"]
    assert c.output["close"] is False
    assert c.status.value == "accumulated" and c.first_divergence is None
    assert 1 <= len(c.contributors) <= 3 and all(x.module and x.module.startswith("blocks.") for x in c.contributors)
    [f] = [f for f in report.findings if f.rule == "TA708"]
    assert f.severity.value == "warning" and f.node == c.contributors[0].node
    assert report.exit_code == 1
    out = tmp_path / "r.json"
    report.write(out)
    [data] = [c for c in json.loads(out.read_text())["comparisons"] if c["name"] == "custom"]
    assert data["status"] == "accumulated" and data["contributors"][0]["node"] == c.contributors[0].node
    report.write(tmp_path / "r.md")
    assert "accumulated" in (tmp_path / "r.md").read_text()
    report.write(tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text()
    assert "status-accumulated" in html and f"{c.output['mismatch_fraction']:.1%} of elements" in html


def test_the_same_model_in_float32_matches_and_has_no_ta708():
    model, x = _deep()
    report = torchaudit.scan(model, example_inputs=x, compare=["dtype"])
    [c] = report.comparisons
    assert c.status.value == "matched" and c.output["close"] and c.contributors == ()
    assert "TA708" not in {f.rule for f in report.findings}


def test_assert_consistent_fails_on_accumulated_error():
    model, x = _deep()
    with pytest.raises(AssertionError, match="accumulated"):
        torchaudit.assert_consistent(model.double(), copy.deepcopy(model).to(torch.bfloat16), x)


@pytest.mark.slow
def test_opt_mode_difference_is_placed_in_the_decoder_layer_that_drops_out():
    """OPT applies dropout with functional calls in each decoder layer's own forward, which
    the module-granular mode comparison does not compare: the difference entered there."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.OPTConfig(hidden_size=32, num_hidden_layers=2, ffn_dim=37, num_attention_heads=2,
                                 vocab_size=100, max_position_embeddings=64, word_embed_proj_dim=32)
    report = torchaudit.scan(transformers.OPTForCausalLM(cfg).eval(), example_inputs=torch.randint(0, 100, (2, 8)),
                             compare=["mode"])
    [c] = report.comparisons
    assert c.status.value == "accumulated" and c.expected_difference
    first = c.contributors[0]
    assert first.entered_in == "model.decoder.layers.0" and first.after == "model_decoder_layers_0_self_attn_out_proj"
    assert first.location is not None and first.location.file.endswith("modeling_opt.py")
    [f] = [f for f in report.findings if f.rule == "TA707"]
    assert "model.decoder.layers.0" in f.message and "TA708" not in {f.rule for f in report.findings}
