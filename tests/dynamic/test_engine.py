"""The engine's invariants: untouched model, reproducible, streaming, exact ints, fallback graphs."""

import copy

import pytest
import torch
import torch.nn as nn

import torchaudit
from tests.dynamic import models as M
from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.compare.lockstep import lockstep
from torchaudit.analyzer.compare.metrics import Tolerance, compare_values, diverges
from torchaudit.analyzer.compare.sides import FxSide, RngStream
from torchaudit.analyzer.trace.tracing import trace_model

ALL = ["dtype", "reload", "mode", "determinism", "batch"]


def _snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict(keep_vars=False).items()},
        {n: m.training for n, m in model.named_modules()},
        {n: {k: v for k, v in vars(m).items() if isinstance(v, (int, float))} for n, m in model.named_modules()},
        {n: m.scale.clone() for n, m in model.named_modules() if isinstance(getattr(m, "scale", None), torch.Tensor)},
    )


@pytest.mark.parametrize("cls", [M.NonPersistentBuffer, M.TensorAttribute, M.PythonCounter, M.LinearBN, M.AlwaysDropout])
@pytest.mark.parametrize("train_mode", [False, True])
def test_user_model_and_rng_are_untouched(cls, train_mode):
    torch.manual_seed(1)
    model = cls().train(train_mode)
    before = _snapshot(model)
    non_persistent = {n: b.clone() for n, b in model.named_buffers()}
    x = torch.randn(8, 6)
    rng = torch.random.get_rng_state()
    torchaudit.scan(model, example_inputs=x, compare=ALL)
    after = _snapshot(model)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert before[1] == after[1] and before[2] == after[2]
    for k in before[0]:
        assert torch.equal(before[0][k], after[0][k]), k
    for k in before[3]:
        assert torch.equal(before[3][k], after[3][k]), k
    for n, b in model.named_buffers():
        assert torch.equal(non_persistent[n], b), n


def test_same_seed_same_results_other_seed_other_numbers():
    x = torch.randn(8, 6)
    model = M.AlwaysDropout().eval()
    one = torchaudit.scan(model, example_inputs=x, compare=["determinism", "mode"], seed=3).to_dict()
    two = torchaudit.scan(model, example_inputs=x, compare=["determinism", "mode"], seed=3).to_dict()
    other = torchaudit.scan(model, example_inputs=x, compare=["determinism", "mode"], seed=4).to_dict()
    assert one["comparisons"] == two["comparisons"] and one["findings"] == two["findings"]
    assert one["comparisons"][0]["nodes"] != other["comparisons"][0]["nodes"]


class Chain(nn.Module):
    def __init__(self, depth: int = 40) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(16, 16) for _ in range(depth))

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


class _Watched(FxSide):
    peak = 0

    def run(self, name):
        super().run(name)
        type(self).peak = max(type(self).peak, sum(isinstance(v, torch.Tensor) for v in self.env.values()))


def test_activations_are_freed_after_their_last_user():
    model = Chain().eval()
    x = ExampleInputs((torch.randn(4, 16),))
    graph = trace_model(model, x)
    n_nodes = len(graph)
    a = _Watched(trace_model(model, x), x, RngStream(0), model.forward)
    b = _Watched(graph, x, RngStream(0), model.forward)
    _Watched.peak = 0
    result = lockstep(a, b, Tolerance.for_dtype(torch.float32), torch.float32, graph)
    assert len(result.nodes) == n_nodes - 0  # every node compared (placeholder and output included)
    assert n_nodes > 80
    assert _Watched.peak <= 6  # a handful of live values per side, never all of them


def test_integer_and_bool_leaves_are_compared_exactly():
    tol = Tolerance.for_dtype(torch.float32)
    a = (torch.tensor([1, 2, 3]), {"mask": torch.tensor([True, False])})
    same = compare_values(a, (torch.tensor([1, 2, 3]), {"mask": torch.tensor([True, False])}), tol, torch.float32)
    flipped = compare_values(a, (torch.tensor([1, 2, 4]), {"mask": torch.tensor([True, False])}), tol, torch.float32)
    mask = compare_values(a, (torch.tensor([1, 2, 3]), {"mask": torch.tensor([True, True])}), tol, torch.float32)
    assert not diverges(same, tol, 1)
    assert diverges(flipped, tol, 1) and diverges(mask, tol, 1)
    assert flipped.stats().mismatch_fraction == pytest.approx(1 / 5)


def test_float_error_within_rounding_is_not_a_divergence_but_a_real_error_is():
    tol = Tolerance.for_dtype(torch.float32)
    ref = torch.randn(64, 256, dtype=torch.float64)
    rounded = compare_values(ref, ref.float(), tol, torch.float32)
    broken = compare_values(ref, (ref * 1.01).float(), tol, torch.float32)
    assert not diverges(rounded, tol, 256)
    assert diverges(broken, tol, 256)
    user = Tolerance.for_dtype(torch.float32, atol=0.0, rtol=0.0)
    assert diverges(compare_values(ref, ref.float(), user, torch.float32), user, 256)


def test_fallback_graph_is_compared_at_module_granularity():
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "examples"))
    from data_dependent import EarlyExit

    torch.manual_seed(0)
    model = EarlyExit().eval()
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.head.weight.mul_(2.0)
    result = torchaudit.compare(model, broken, torch.randn(2, 3, 16, 16))
    assert result.status.value == "diverged"
    assert result.first_divergence.module == "head"
    assert {n.module for n in result.nodes} >= {"stem.0", "stem.1", "head"}
    assert [(d.name, d.kind) for d in result.state_diff] == [("head.weight", "parameter")]
