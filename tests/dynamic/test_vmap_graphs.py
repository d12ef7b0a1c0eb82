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
