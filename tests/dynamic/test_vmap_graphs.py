"""Export graphs that push functorch vmap levels (transformers' masks) are compared safely."""

import pytest
import torch

import torchaudit

pytestmark = pytest.mark.slow  # GPT-2 exported and compared


def test_gpt2_comparisons_run_and_leave_no_vmap_level_behind():
    transformers = pytest.importorskip("transformers")
    from torch._C._functorch import maybe_current_level

    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=1, n_head=2))
    report = torchaudit.scan(model, example_inputs={"input_ids": torch.randint(0, 100, (2, 8))})
    assert report.graph.tracer == "export"
    status = {c.name: c.status.value for c in report.comparisons}
    assert status["dtype"] == status["reload"] == status["determinism"] == status["batch"] == "matched"
    assert not [f for f in report.findings if f.rule in ("TA903", "TA902")]
    assert maybe_current_level() is None  # a level left pushed breaks every later random op
    transformers.BertModel(transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2))


def _decoder(kind):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    common = dict(hidden_size=32, num_hidden_layers=2, intermediate_size=37, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=100, max_position_embeddings=64)
    if kind == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=100,
                                                                    n_positions=64)).eval()
    cls, cfg = {"llama": ("LlamaForCausalLM", "LlamaConfig"), "qwen2": ("Qwen2ForCausalLM", "Qwen2Config"),
                "mistral": ("MistralForCausalLM", "MistralConfig")}[kind]
    return getattr(transformers, cls)(getattr(transformers, cfg)(**common)).eval()


@pytest.mark.parametrize("kind, key, module", [
    ("llama", "model.layers.1.self_attn.k_proj.weight", "model.layers.1.self_attn.k_proj"),
    ("qwen2", "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.up_proj"),
    ("mistral", "model.layers.1.post_attention_layernorm.weight", "model.layers.1.post_attention_layernorm"),
    ("gpt2", "transformer.h.1.ln_2.weight", "transformer.h.1.ln_2"),
])
def test_a_one_tensor_fault_in_a_decoder_is_pinned_op_by_op_at_its_module(kind, key, module, tmp_path):
    """Decoders whose export graph pushes vmap levels are compared node by node outside the
    mask region: the blame is an op of the module that owns the tensor, with its source line."""
    from torchaudit.diffing import diff

    model = _decoder(kind)
    sd = model.state_dict()
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(sd, a)
    torch.save({k: v * 1.5 if k == key else v for k, v in sd.items()}, b)
    report = diff(model, str(a), str(b), example_inputs=torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(0)))
    assert report.graph.tracer == "export"
    [c] = report.comparisons
    d = c.first_divergence
    assert d is not None and d.module == module, (d, c.notes)
    assert d.location is not None and d.location.line
    assert any(n.op.startswith("aten.") for n in c.nodes)  # op by op, not module by module
    assert not c.notes  # no region had to fall back to module granularity
