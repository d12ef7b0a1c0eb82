"""A scan leaves the user's model as it found it: parameters, buffers, training flags,
Python attributes, config, example inputs, and the global RNG state."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn as nn

import torchaudit
from tests.conftest import EXAMPLES, FIXTURES
from torchaudit.analyzer.load.target import load_target

MODELS = FIXTURES / "models"


def snapshot(model: nn.Module) -> dict:
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "objects": {k: id(v) for k, v in model.state_dict(keep_vars=True).items()},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "grads": {k: p.grad for k, p in model.named_parameters()},
        "training": {k: m.training for k, m in model.named_modules()},
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
    }


def assert_unchanged(before: dict, model: nn.Module) -> None:
    after = snapshot(model)
    assert before["objects"] == after["objects"]  # the same tensors, not replacements
    assert before["tensors"].keys() == after["tensors"].keys()
    for k, v in before["tensors"].items():
        assert torch.equal(v, after["tensors"][k]), f"{k} changed"
    assert before["requires_grad"] == after["requires_grad"]
    assert all(g is None for g in after["grads"].values())
    assert before["training"] == after["training"]
    assert torch.equal(before["torch_rng"], after["torch_rng"])
    assert before["python_rng"] == after["python_rng"]


def _load(path):
    t = load_target(str(path))
    return t.model, t.module.example_inputs()


@pytest.mark.parametrize(
    "path",
    [EXAMPLES / "mlp_bn_dropout.py", MODELS / "cnn_bn.py", EXAMPLES / "data_dependent.py", EXAMPLES / "transformer_block.py"],
    ids=lambda p: p.stem,
)
def test_scan_in_train_mode_leaves_model_and_rng_unchanged(path):
    model, inputs = _load(path)
    model.train()  # BatchNorm would update its running statistics, Dropout draw from the RNG
    torch.manual_seed(123)
    random.seed(7)
    before = snapshot(model)
    report = torchaudit.scan(model, example_inputs=inputs)
    assert report.graph.nodes > 0
    assert_unchanged(before, model)
    bn = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert all(int(m.num_batches_tracked) == 0 for m in bn)


def test_mixed_training_flags_are_kept():
    model, inputs = _load(MODELS / "nested.py")
    model.train()
    model.blocks[0].eval()  # some submodules in eval, some in train
    model.blocks[1].gate.eval()
    before = snapshot(model)
    torchaudit.scan(model, example_inputs=inputs)
    assert_unchanged(before, model)
    assert [model.blocks[0].training, model.blocks[1].training, model.blocks[1].gate.training] == [False, True, False]


class Counting(nn.Module):
    """Mutates itself and its input in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.calls = 0
        self.register_buffer("seen", torch.zeros(()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.seen += 1
        x.mul_(2)
        return torch.dropout(self.fc(x), 0.5, True)


def test_python_attributes_buffers_and_example_inputs_are_untouched():
    model = Counting()
    x = torch.ones(2, 4)
    torch.manual_seed(0)
    before = snapshot(model)
    torchaudit.scan(model, example_inputs=x)
    assert_unchanged(before, model)
    assert model.calls == 0 and float(model.seen) == 0.0
    assert torch.equal(x, torch.ones(2, 4))


@pytest.mark.slow  # a transformers model through the whole scan
def test_transformers_model_and_its_config_are_untouched():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    model = transformers.GPT2LMHeadModel(config).train()
    assert model.config.use_cache is True
    config_before = model.config.to_dict()
    inputs = {"input_ids": torch.randint(0, 100, (2, 8))}
    before = snapshot(model)
    report = torchaudit.scan(model, example_inputs=inputs)
    assert report.graph.tracer == "export"
    assert_unchanged(before, model)
    assert model.config is config and model.config.use_cache is True
    assert model.config.to_dict() == config_before


@pytest.mark.slow
def test_bert_through_transformers_tracer_keeps_config():
    transformers = pytest.importorskip("transformers")
    model = transformers.BertModel(transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64,
    ))
    config_before = model.config.to_dict()
    inputs = {"input_ids": torch.randint(0, 100, (2, 8))}
    before = snapshot(model)
    report = torchaudit.scan(model, example_inputs=inputs)
    assert report.graph.tracer == "transformers-fx"
    assert_unchanged(before, model)
    assert model.config.to_dict() == config_before


@pytest.mark.slow
def test_failed_transformers_trace_leaves_torch_functions_unpatched():
    # transformers' HFTracer wraps torch.empty, torch.zeros, ... and restores them only when
    # its trace succeeds; GPT-2 fails it (and falls through to torch.export)
    transformers = pytest.importorskip("transformers")
    from transformers.utils.fx import HFTracer

    before = {name: getattr(torch, name) for name in HFTracer._TORCH_METHODS_TO_PATCH}
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=1, n_head=2))
    report = torchaudit.scan(model, example_inputs={"input_ids": torch.randint(0, 100, (2, 8))})
    assert report.graph.tracer == "export"
    assert [n for n, fn in before.items() if getattr(torch, n) is not fn] == []
    with torch.device("meta"):
        assert torch.nn.Linear(2, 2).weight.device.type == "meta"
