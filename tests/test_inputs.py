"""Example inputs: the four sources in priority order, tuples, dicts as keyword arguments."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

import torchaudit
from tests.conftest import FIXTURES, invoke_cli
from torchaudit.analyzer.load.inputs import check_forward, parse_input_shape, place_inputs, resolve_inputs
from torchaudit.analyzer.load.target import load_target
from torchaudit.errors import InputError

MODELS = FIXTURES / "models"


@pytest.fixture(scope="module")
def sources():
    return load_target(str(MODELS / "sources.py"))


def _batch(inputs) -> int:
    return inputs.args[0].shape[0]


def test_inputs_fn_comes_first(sources):
    got = resolve_inputs(sources.model, sources.module, f"{MODELS / 'sources.py'}:batch_of_five", ["3,4"])
    assert _batch(got) == 5 and got.source.startswith("--inputs")


def test_input_shape_comes_second(sources):
    got = resolve_inputs(sources.model, sources.module, None, ["3,4"])
    assert _batch(got) == 3 and got.args[0].dtype == torch.float32


def test_example_inputs_function_comes_third(sources):
    got = resolve_inputs(sources.model, sources.module, None, [])
    assert _batch(got) == 2 and "example_inputs()" in got.source


def test_example_input_array_comes_last():
    t = load_target(str(MODELS / "lightning_style.py"))
    got = resolve_inputs(t.model, t.module)
    assert _batch(got) == 7 and "example_input_array" in got.source


def test_no_source_gives_none():
    t = load_target(str(MODELS / "one_buildable.py"))
    assert resolve_inputs(t.model, t.module) is None


def test_repeatable_input_shape_with_dtypes():
    model = nn.Linear(4, 2)
    got = resolve_inputs(model, None, None, ["8,128:int64", "8,128:bool", "2,3"])
    a, b, c = got.args
    assert a.shape == (8, 128) and a.dtype == torch.int64 and int(a.min()) >= 0
    assert b.dtype == torch.bool
    assert c.shape == (2, 3) and c.dtype == torch.float32


def test_input_shape_takes_the_models_float_dtype():
    got = resolve_inputs(nn.Linear(4, 2).double(), None, None, ["2,4"])
    assert got.args[0].dtype == torch.float64


@pytest.mark.parametrize("text", ["8,x", "", "8,,128", "8,-1", "8,128:float128", "1x3"])
def test_malformed_input_shape(text):
    with pytest.raises(InputError) as err:
        parse_input_shape(text)
    assert "--input-shape" in err.value.message
    assert "e.g." in err.value.fix or "use one of" in err.value.fix


def test_dict_inputs_are_keyword_arguments():
    report = torchaudit.scan(str(MODELS / "keyword_inputs.py"), static_only=True)
    assert report.target["inputs"] == "input_ids=Tensor[2,5]:int64, attention_mask=Tensor[2,5]:float32"
    assert report.graph.tracer == "fx"
    t = load_target(str(MODELS / "keyword_inputs.py"))
    got = resolve_inputs(t.model, t.module)
    assert got.args == () and set(got.kwargs) == {"input_ids", "attention_mask"}
    out = check_forward(t.model, got)
    assert out.shape == (2, 2)


def test_tuple_inputs_are_positional_arguments():
    t = load_target(str(MODELS / "two_inputs.py"))
    got = resolve_inputs(t.model, t.module)
    assert [a.shape[-1] for a in got.args] == [4, 5] and got.kwargs == {}
    report = torchaudit.scan(t.model, example_inputs=t.module.example_inputs(), static_only=True)
    assert report.graph.tracer == "fx" and report.graph.nodes > 0


def test_forward_failure_names_the_inputs_and_the_error():
    t = load_target(str(MODELS / "wrong_inputs.py"))
    with pytest.raises(InputError) as err:
        check_forward(t.model, resolve_inputs(t.model, t.module))
    msg = err.value.message
    assert "x=Tensor[2,10]:float32" in msg  # which input, by forward's parameter name
    assert "example_inputs()" in msg  # where it came from
    assert "RuntimeError" in msg and "mat1 and mat2" in msg  # the error itself


def test_place_inputs_moves_to_the_model_device_without_touching_the_callers_tensors():
    model = nn.Linear(4, 2).to("meta")
    x = torch.randn(2, 4)
    from torchaudit.analyzer.load.inputs import ExampleInputs

    placed = place_inputs(ExampleInputs((x,), {}, "t"), model)
    assert placed.args[0].is_meta and placed.args[0].shape == (2, 4) and not x.is_meta
    report = torchaudit.scan(model, example_inputs=x)  # a meta model: shapes without weights
    assert report.graph.tracer == "fx"
    placed = place_inputs(ExampleInputs((x,), {"m": [x]}, "t"), nn.Linear(4, 2))
    assert placed.args[0] is x and placed.kwargs["m"][0] is x  # already on the model's device


@pytest.mark.cuda
def test_cpu_inputs_reach_a_cuda_model():
    from torchaudit.analyzer.load.inputs import ExampleInputs

    x = torch.randn(2, 4)
    placed = place_inputs(ExampleInputs((x,), {"m": [x]}, "t"), nn.Linear(4, 2).cuda())
    assert placed.args[0].is_cuda and placed.kwargs["m"][0].is_cuda and x.device.type == "cpu"
    report = torchaudit.scan(nn.Sequential(nn.Linear(4, 4), nn.Dropout()).cuda().train(), example_inputs=x)
    assert report.graph.tracer == "fx"


def test_cli_input_sources_in_json(tmp_path):
    out = tmp_path / "r.json"
    res = invoke_cli("scan", str(MODELS / "sources.py"), "--input-shape", "6,4", "--static-only", "--json", str(out))
    assert res.returncode == 0, res.stderr
    target = json.loads(out.read_text())["target"]
    assert target["inputs"] == "Tensor[6,4]:float32" and target["inputs_source"] == "--input-shape 6,4"


def test_forward_failure_names_the_innermost_module_that_raised():
    from torchaudit.analyzer.load.inputs import ExampleInputs

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(1568, 128)
            self.drop = nn.Dropout(0.1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            try:
                self.drop(None)  # raises and is caught: must not be blamed later
            except Exception:  # noqa: BLE001
                pass
            return self.fc1(x)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Identity()
            self.block = Block()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(self.stem(x).flatten(1))

    model = Net()
    with pytest.raises(InputError) as err:
        check_forward(model, ExampleInputs((torch.randn(4, 2, 32, 32),), {}, "--input-shape"))
    msg = err.value.message
    assert "): block.fc1 (Linear): RuntimeError: mat1 and mat2 shapes cannot be multiplied (4x2048 and 1568x128)" in msg
    assert "\n" not in msg
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())  # hooks removed

    class Root(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x).view(3, -1)  # fails in the root's own code, after fc returned

    with pytest.raises(InputError) as err:
        check_forward(Root(), ExampleInputs((torch.randn(2, 4),), {}, "--input-shape"))
    assert "(x=Tensor[2,4]:float32): RuntimeError: shape" in err.value.message
