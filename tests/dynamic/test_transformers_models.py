"""transformers models: dtype runs to the end, no false alarms, and ``diff`` pins one perturbed tensor."""

import pytest
import torch

import torchaudit
from torchaudit.diffing import diff

pytestmark = pytest.mark.slow  # third-party models through the comparisons


@pytest.fixture(autouse=True, scope="module")
def _transformers() -> None:
    # imported when these tests run, not when they are collected: once transformers is imported,
    # every later trace that falls past plain fx imports its modeling code too (seconds)
    pytest.importorskip("transformers")


def tiny_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     vocab_size=100, max_position_embeddings=64)
    return BertModel(cfg).eval()


def bert_inputs():
    ids = torch.randint(0, 100, (3, 12), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def tiny_resnet():
    from transformers import ResNetConfig, ResNetModel

    torch.manual_seed(0)
    model = ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 2], num_channels=3))
    model.train()
    with torch.no_grad():  # move BatchNorm statistics off their defaults, as training would
        for _ in range(3):
            model(torch.randn(4, 3, 32, 32))
    return model.eval()


def test_dtype_on_bert_runs_to_the_end_with_per_node_errors():
    report = torchaudit.scan(tiny_bert(), example_inputs=bert_inputs(), compare=["dtype"])
    [c] = report.comparisons
    assert c.status.value == "matched", c.first_divergence
    assert len(c.nodes) > 40  # every computing node (pure view/reshape ops are not re-measured)
    assert c.nodes[-1].op == "output" and c.output["cosine"] > 0.999999
    assert any(n.module and "encoder.layer.1" in n.module for n in c.nodes)  # reached the last layer
    assert sum(n.local.max_abs > 0 for n in c.nodes) > 20  # errors are measured per node
    assert not [f for f in report.findings if f.rule in ("TA704", "TA706", "TA903")]


@pytest.mark.parametrize("build, inputs", [(tiny_bert, bert_inputs), (tiny_resnet, lambda: torch.randn(2, 3, 32, 32))])
def test_no_false_alarms_on_clean_transformers_models(build, inputs):
    report = torchaudit.scan(build(), example_inputs=inputs(), compare=["dtype", "reload", "determinism", "batch"])
    statuses = {c.name: c.status.value for c in report.comparisons}
    assert statuses == {"dtype": "matched", "reload": "matched", "determinism": "matched", "batch": "matched"}
    assert not [f for f in report.findings if f.rule.startswith("TA7") or f.rule == "TA903"]


def _perturbed(model, key, change, tmp_path):
    sd = model.state_dict()
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(sd, a)
    sd2 = {k: v.clone() for k, v in sd.items()}
    sd2[key] = change(sd2[key])
    torch.save(sd2, b)
    return str(a), str(b)


@pytest.mark.parametrize(
    "key, module, change",
    [
        ("embeddings.LayerNorm.weight", "embeddings.LayerNorm", lambda t: t * 1.5),
        ("encoder.layer.0.intermediate.dense.weight", "encoder.layer.0.intermediate.dense", lambda t: t * 1.5),
        ("encoder.layer.1.attention.output.LayerNorm.weight", "encoder.layer.1.attention.output.LayerNorm", lambda t: t * 0.5),
        ("encoder.layer.1.output.dense.weight", "encoder.layer.1.output.dense", lambda t: t * 1.1),
    ],
)
def test_diff_pins_the_perturbed_module_in_bert(key, module, change, tmp_path):
    model = tiny_bert()
    a, b = _perturbed(model, key, change, tmp_path)
    report = diff(model, a, b, bert_inputs())
    [c] = report.comparisons
    assert c.name == "checkpoints" and c.status.value == "diverged"
    assert c.first_divergence.module == module
    changed = [r for r in report.extras["tensor_diff"] if r["status"] != "unchanged"]
    assert [r["key"] for r in changed] == [key]


@pytest.mark.parametrize(
    "key, module",
    [
        ("embedder.embedder.normalization.running_var", "embedder.embedder.normalization"),
        ("encoder.stages.1.layers.1.layer.0.normalization.running_var", "encoder.stages.1.layers.1.layer.0.normalization"),
        ("encoder.stages.1.layers.0.shortcut.convolution.weight", "encoder.stages.1.layers.0.shortcut.convolution"),
    ],
)
def test_diff_pins_the_perturbed_module_in_resnet(key, module, tmp_path):
    model = tiny_resnet()
    a, b = _perturbed(model, key, lambda t: t * 4.0, tmp_path)
    report = diff(model, a, b, torch.randn(2, 3, 32, 32))
    [c] = report.comparisons
    assert c.status.value == "diverged" and c.first_divergence.module == module


def test_diff_pins_a_weight_read_by_its_parent_at_the_module_that_owns_it(tmp_path):
    """T5's DenseReluDense reads ``self.wo.weight.dtype`` in its own forward: the weight still
    belongs to ``wo``, and a changed ``wo.weight`` is pinned there, not at its parent."""
    from transformers import T5Config, T5Model

    torch.manual_seed(0)
    model = T5Model(T5Config(d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, vocab_size=100)).eval()
    key = "encoder.block.1.layer.1.DenseReluDense.wo.weight"
    a, b = _perturbed(model, key, lambda t: t * 1.5, tmp_path)
    g = torch.Generator().manual_seed(1)
    inputs = {"input_ids": torch.randint(0, 100, (2, 8), generator=g), "decoder_input_ids": torch.randint(0, 100, (2, 5), generator=g)}
    [c] = diff(model, a, b, example_inputs=inputs).comparisons
    assert c.first_divergence is not None and c.first_divergence.module == "encoder.block.1.layer.1.DenseReluDense.wo"
