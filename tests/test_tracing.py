"""Tracing into the networkx graph: tracer chain, per-node facts, attribution, JSON."""

from __future__ import annotations

import inspect

import networkx as nx
import pytest
import torch
import torch.nn as nn

import torchaudit
from tests.conftest import EXAMPLES, FIXTURES
from tests.json_shape import report_json
from torchaudit.analyzer.trace.graph import TORCH_DIR, ModelGraph
from torchaudit.analyzer.load.inputs import ExampleInputs, from_value
from torchaudit.analyzer.load.target import load_target
from torchaudit.analyzer.trace.tracing import trace_model

MODELS = FIXTURES / "models"


def _line_of(path, marker: str) -> int:
    lines = path.read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if marker in text)


def _trace_file(path) -> tuple[ModelGraph, object]:
    t = load_target(str(path))
    return trace_model(t.model, from_value(t.module.example_inputs(), "test")), t


def assert_complete_nodes(graph: ModelGraph) -> None:
    """Every node carries op kind, target, module path and type; computing nodes carry
    output shape, dtype, device and a source location."""
    assert isinstance(graph.graph, nx.DiGraph) and nx.is_directed_acyclic_graph(graph.graph)
    assert list(graph.graph.nodes) == sorted(graph.graph.nodes, key=graph.order.index)
    for n in graph:
        assert n.op in ("placeholder", "get_attr", "call_function", "call_method", "call_module", "output"), n
        assert isinstance(n.target, str) and n.target
        assert isinstance(n.module, str) and n.module_type, n
        assert n.location is not None and n.location.line > 0 and not n.location.file.startswith(TORCH_DIR), n
        if n.op in ("call_function", "call_method", "call_module") and n.shape is not None:
            assert n.dtype and n.device == "cpu", n
            assert n.location is not None and n.location.line > 0, n
    assert all(n.shape is not None for n in graph if n.op == "call_module")
    if graph.gm is not None:  # every node whose value is a tensor has its facts
        for fx_node in graph.gm.graph.nodes:
            value = fx_node.meta.get("val", fx_node.meta.get("tensor_meta"))
            if isinstance(value, torch.Tensor) or type(value).__name__ == "TensorMetadata":
                assert graph.node(fx_node.name).shape is not None, fx_node.name


@pytest.mark.parametrize(
    "path, tracer",
    [
        (MODELS / "mlp_dropout.py", "fx"),
        (MODELS / "cnn_bn.py", "fx"),
        (EXAMPLES / "transformer_block.py", "fx"),
        (EXAMPLES / "mlp_bn_dropout.py", "fx"),
        (MODELS / "control_flow.py", "hooks"),
        (EXAMPLES / "data_dependent.py", "hooks"),
    ],
    ids=lambda v: getattr(v, "stem", v),
)
def test_trace_and_json(path, tracer):
    graph, t = _trace_file(path)
    assert graph.tracer == tracer
    assert_complete_nodes(graph)
    data = report_json(torchaudit.scan(str(path), static_only=True))
    assert data["graph"]["tracer"] == tracer and data["graph"]["nodes"] == len(graph)
    assert data["target"]["model_class"] == type(t.model).__name__
    ta901 = [f for f in data["findings"] if f["rule"] == "TA901"]
    assert bool(ta901) == (tracer != "fx")
    if ta901:
        assert "fx: TraceError" in ta901[0]["message"] and "lost:" in ta901[0]["message"]
        # the fix names why fx failed: data-dependent control flow in these models
        assert "control flow out of forward" in ta901[0]["fix"]


def test_mlp_dropout_nodes():
    graph, _ = _trace_file(MODELS / "mlp_dropout.py")
    drop = graph.node("net_2")
    assert (drop.op, drop.module, drop.module_type) == ("call_module", "net.2", "torch.nn.modules.dropout.Dropout")
    assert drop.shape == (4, 32) and drop.dtype == "float32"
    assert graph.predecessors("net_2") == ["net_1"] and graph.successors("net_2") == ["net_3"]


def test_cnn_batchnorm_nodes():
    graph, _ = _trace_file(MODELS / "cnn_bn.py")
    bn = graph.node("features_4")
    assert bn.module_type == "torch.nn.modules.batchnorm.BatchNorm2d" and bn.shape == (2, 16, 8, 8)
    flatten = next(n for n in graph if n.target == "torch.flatten")
    assert flatten.module == "" and flatten.shape == (2, 16)
    assert flatten.location.line == _line_of(MODELS / "cnn_bn.py", "torch.flatten")


def test_attribution_with_nested_modules_and_functional_calls():
    path = MODELS / "nested.py"
    graph, _ = _trace_file(path)
    assert graph.tracer == "fx"
    assert_complete_nodes(graph)
    gate_line = _line_of(path, "GATE_LINE")
    block_line = _line_of(path, "BLOCK_LINE")
    sig = [n for n in graph if n.target == "torch.sigmoid"]
    assert [n.module for n in sig] == ["blocks.0.gate", "blocks.1.gate"]
    # the stack holds the modules whose forward ran (a ModuleList is iterated, never called)
    assert [n.module_stack for n in sig] == [("blocks.0", "blocks.0.gate"), ("blocks.1", "blocks.1.gate")]
    for n in sig:
        assert n.module_type.endswith(".Gate")
        assert n.location.file == str(path) and n.location.line == gate_line
        assert n.shape == (3, 8) and n.dtype == "float32" and n.device == "cpu"
    gelu = [n for n in graph if n.target == "torch.nn.functional.gelu"]
    assert [(n.module, n.location.line) for n in gelu] == [("blocks.0", block_line), ("blocks.1", block_line)]
    proj = graph.node("blocks_0_gate_proj")
    assert proj.op == "call_module" and proj.module == "blocks.0.gate.proj" and proj.target == "blocks.0.gate.proj"
    assert proj.module_type == "torch.nn.modules.linear.Linear"
    scale = graph.node("blocks_1_gate_scale")
    assert scale.op == "get_attr" and scale.module == "blocks.1.gate" and scale.shape == (8,)
    placeholder, output = graph.node("x"), graph.node("output")
    assert placeholder.module == "" == output.module and placeholder.module_type.endswith(".Net")
    net_forward = [i for i, text in enumerate(path.read_text().splitlines(), 1) if "def forward" in text][-1]
    assert placeholder.location.line == output.location.line == net_forward  # Net.forward's def line
    assert {n.name for n in graph.nodes_in("blocks.1")} >= {"blocks_1_gate_proj", "gelu_1"}
    assert graph.fx_node("gelu_1").target is torch.nn.functional.gelu and graph.fx_node("nope") is None


def test_hooks_fallback_keeps_data_flow_through_functional_ops():
    path = MODELS / "control_flow.py"
    graph, _ = _trace_file(path)
    assert graph.tracer == "hooks" and graph.gm is None
    assert [n.name for n in graph] == ["x", "a", "b", "out", "output"]
    assert graph.predecessors("b") == ["a"]
    assert graph.predecessors("out") == ["b"]  # through the negation and torch.tanh
    assert graph.predecessors("output") == ["out"]
    out = graph.node("out")
    assert out.location.line == _line_of(path, "self.out(torch.tanh")
    assert out.shape == (2, 2) and out.module_type == "torch.nn.modules.linear.Linear"
    assert any("fx: TraceError" in note for note in graph.notes)


class _TracesButFailsToRun(nn.Module):
    """fx records a call to a method that only exists at trace time."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.fx.Proxy):  # plain fx only: export traces with fake tensors
            return self.fc(x).no_such_method()
        return self.fc(x)


def test_fx_graph_that_fails_to_run_falls_through_to_the_next_tracer():
    graph = trace_model(_TracesButFailsToRun(), ExampleInputs((torch.randn(2, 4),)))
    assert graph.tracer == "export"
    assert any(note.startswith("fx: TraceError: the traced graph fails to run at node no_such_method") for note in graph.notes)
    assert [n.module for n in graph if n.target.startswith("aten.linear")] == ["fc"]


class _KwargsForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + kwargs["bias"]


class _OptionalArgs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, scale: float = 2.0) -> torch.Tensor:
        y = self.fc(x)
        if mask is not None:
            y = y * mask
        return y * scale


def test_forward_with_var_keyword_arguments_traces_with_fx():
    graph = trace_model(_KwargsForward(), ExampleInputs((torch.randn(2, 4),), {"bias": torch.ones(4)}))
    assert graph.tracer == "fx"
    add = next(n for n in graph if n.target == "_operator.add")
    assert add.shape == (2, 4) and add.device == "cpu"


def test_unused_keyword_arguments_are_pinned_without_guard_nodes():
    graph = trace_model(_OptionalArgs(), ExampleInputs((torch.randn(2, 4),)))
    assert graph.tracer == "fx"
    targets = [n.target for n in graph]
    assert "torch._assert" not in targets and not any("_assert_is_none" in t for t in targets)
    pinned = [n.name for n in graph.gm.graph.nodes if n.meta.get("torchaudit_pinned")]
    assert pinned == ["mask_1", "scale_1"]
    assert [n.name for n in graph if n.meta.get("pinned")] == ["mask_1", "scale_1"]
    assert [n.shape for n in graph if n.op == "output"] == [(2, 4)]
    assert graph.gm(torch.ones(1, 4)).shape == (1, 4)  # the graph still runs with the pins
    with_mask = trace_model(_OptionalArgs(), ExampleInputs((torch.randn(2, 4),), {"mask": torch.ones(2, 4)}))
    assert "_operator.mul" in [n.target for n in with_mask] and with_mask.tracer == "fx"
    assert "mask" in inspect.signature(with_mask.gm.forward).parameters


def test_static_stage_without_inputs_still_traces():
    graph = trace_model(load_target(str(MODELS / "nested.py")).model, None)
    assert graph.tracer == "fx" and all(n.shape is None for n in graph)


# --- real third-party models: transformers, random weights, tiny configs ---------------------


@pytest.fixture(scope="module")
def hf():
    transformers = pytest.importorskip("transformers")  # a dev dependency: always present in CI
    T = transformers
    torch.manual_seed(0)
    ids = torch.randint(0, 100, (2, 8))
    text = dict(vocab_size=100, max_position_embeddings=64)
    return {
        "bert": (T.BertModel(T.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, **text)),
                 {"input_ids": ids, "attention_mask": torch.ones(2, 8, dtype=torch.long)}),
        "gpt2": (T.GPT2LMHeadModel(T.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64)), {"input_ids": ids}),
        "llama": (T.LlamaModel(T.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                             intermediate_size=37, **text)), {"input_ids": ids}),
        "resnet": (T.ResNetModel(T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")),
                   {"pixel_values": torch.randn(1, 3, 32, 32)}),
        "mobilenet": (T.MobileNetV2Model(T.MobileNetV2Config(image_size=32, depth_multiplier=0.25)),
                      {"pixel_values": torch.randn(1, 3, 32, 32)}),
    }


def _hf_graph(hf, name: str, tracer: str) -> ModelGraph:
    model, inputs = hf[name]
    graph = trace_model(model, ExampleInputs((), inputs))
    assert graph.tracer == tracer, graph.notes
    assert_complete_nodes(graph)
    data = report_json(torchaudit.scan(model, example_inputs=inputs, static_only=True))
    assert data["graph"]["tracer"] == tracer and data["graph"]["nodes"] == len(graph)
    assert data["graph"]["parameters"] == sum(p.numel() for p in model.parameters())
    assert data["environment"]["transformers"] is not None
    # TA901 says what a fallback lost; transformers' own fx tracer loses nothing, so it is no finding
    assert [f["rule"] for f in data["findings"] if f["rule"] == "TA901"] == ([] if tracer == "transformers-fx" else ["TA901"])
    return graph


def _modeling_file(node, stem: str) -> bool:
    return node.location is not None and node.location.file.endswith(f"{stem}.py")


@pytest.mark.slow  # a transformers model traced by each tracer in turn
def test_bert_query_projection(hf):
    graph = _hf_graph(hf, "bert", "transformers-fx")
    query = graph.node("encoder_layer_0_attention_self_query")
    assert query.op == "call_module" and query.module == "encoder.layer.0.attention.self.query"
    assert query.module_type == "torch.nn.modules.linear.Linear" and query.shape == (2, 8, 32)
    assert _modeling_file(query, "modeling_bert")
    inside = [n for n in graph.nodes_in("encoder.layer.0.attention.self") if n.op in ("call_function", "call_method")]
    assert inside and all(n.module.startswith("encoder.layer.0.attention.self") for n in inside)
    assert any(n.module == "encoder.layer.0.attention.self" and _modeling_file(n, "modeling_bert") for n in inside)


@pytest.mark.slow
def test_gpt2_attention_and_head(hf):
    graph = _hf_graph(hf, "gpt2", "export")
    c_attn = [n for n in graph if n.module == "transformer.h.0.attn.c_attn" and n.op == "call_function"]
    assert c_attn and c_attn[0].module_type == "transformers.pytorch_utils.Conv1D"
    assert c_attn[0].module_stack == ("transformer", "transformer.h.0", "transformer.h.0.attn", "transformer.h.0.attn.c_attn")
    head = [n for n in graph if n.target == "aten.linear.default" and n.module == "lm_head"]
    assert len(head) == 1 and head[0].shape == (2, 8, 100) and head[0].device == "cpu"
    weight = graph.node("lm_head_weight")
    assert weight.op == "get_attr" and weight.module == "lm_head"


@pytest.mark.slow
def test_llama_query_projection(hf):
    graph = _hf_graph(hf, "llama", "export")
    q = [n for n in graph if n.target == "aten.linear.default" and n.module == "layers.0.self_attn.q_proj"]
    assert len(q) == 1 and q[0].module_type == "torch.nn.modules.linear.Linear" and q[0].shape == (2, 8, 32)
    assert _modeling_file(q[0], "modeling_llama")


@pytest.mark.slow
def test_resnet_stage_convolution(hf):
    graph = _hf_graph(hf, "resnet", "transformers-fx")
    conv = graph.node("encoder_stages_1_layers_0_layer_0_convolution")
    assert conv.module == "encoder.stages.1.layers.0.layer.0.convolution"
    assert conv.module_type == "torch.nn.modules.conv.Conv2d" and conv.shape == (1, 16, 4, 4)
    assert _modeling_file(conv, "modeling_resnet")


@pytest.mark.slow
def test_mobilenet_v2_only_export_traces_it(hf):
    graph = _hf_graph(hf, "mobilenet", "export")
    failed = {note.split(":")[0] for note in graph.notes if not note.startswith("lost:")}
    assert failed == {"fx", "transformers-fx"}
    stem = [n for n in graph if n.target == "aten.conv2d.default" and n.module == "conv_stem.first_conv.convolution"]
    assert len(stem) == 1 and stem[0].module_type == "torch.nn.modules.conv.Conv2d" and stem[0].shape == (1, 8, 16, 16)
    assert _modeling_file(stem[0], "modeling_mobilenet_v2")
