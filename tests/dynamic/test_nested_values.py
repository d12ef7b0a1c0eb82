"""Nested inputs and outputs (named tuples, dataclasses, dicts) survive every comparison, and
the walker in ``analyzer/values.py`` keeps their types."""

from collections import namedtuple
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn as nn

import torchaudit
from torchaudit.analyzer.compare.lockstep import cast_like
from torchaudit.analyzer.compare.sides import join_samples
from torchaudit.analyzer.values import cloned, leaves, map_tensors, tensor_leaves, zip_map

Batch = namedtuple("Batch", "x mask")


@dataclass
class Out:
    logits: torch.Tensor
    hidden: torch.Tensor
    note: str = "out"


@dataclass(frozen=True)
class Pair:
    a: object
    b: object = None
    derived: int = field(init=False, default=0)


class NamedTupleIn(nn.Module):
    """A ``Batch`` in, an ``Out`` dataclass out; BatchNorm and Dropout give the comparisons
    something to see."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(8, 3)

    def forward(self, batch):
        h = self.bn(self.fc(batch.x)) * batch.mask
        return Out(self.head(self.drop(h)), h)


class NestedOut(NamedTupleIn):
    """The same layers; a dict holding nested tuples out."""

    def forward(self, batch):
        h = self.bn(self.fc(batch.x)) * batch.mask
        return {"logits": self.head(self.drop(h)), "parts": (h, (torch.relu(h), batch.mask))}


def _batch():
    gen = torch.Generator().manual_seed(0)
    return Batch(torch.randn(4, 6, generator=gen), (torch.rand(4, 8, generator=gen) > 0.3).float())


EXPECTED = {
    "dtype": "matched",  # float64 vs float32 of a small MLP: rounding only
    "device": "skipped" if not torch.cuda.is_available() else None,
    "reload": "matched",  # BatchNorm statistics are in the state dict
    "mode": "diverged",  # BatchNorm batch statistics and Dropout in train mode
    "determinism": "matched",
    "batch": "matched",  # eval mode: BatchNorm uses its running statistics
}


@pytest.mark.parametrize("cls", [NamedTupleIn, NestedOut])
def test_every_comparison_runs_on_namedtuple_input(cls):
    torch.manual_seed(0)
    model = cls()
    report = torchaudit.scan(model, example_inputs=(_batch(),))
    statuses = {c.name: c.status.value for c in report.comparisons}
    assert set(statuses) == set(EXPECTED), statuses
    for name, want in EXPECTED.items():
        c = next(c for c in report.comparisons if c.name == name)
        assert c.status.value != "error", (name, c.skipped_reason)
        if want is not None:
            assert c.status.value == want, (name, c.status.value, c.skipped_reason)
        if c.status.value != "skipped":
            # the model's output (a dataclass, or a dict of tuples) was compared leaf by leaf
            assert c.output, name
            assert c.output["close"] == (want == "matched"), (name, c.output)
    assert not [f for f in report.findings if f.rule == "TA903"]


def test_namedtuple_and_dataclass_round_trip():
    b = _batch()
    out = Out(b.x, b.mask, note="kept")
    value = {"batch": b, "out": out, "rest": [b.x, 3, None, (2.5, "s")]}
    assert [t is u for t, u in zip(tensor_leaves(value), [b.x, b.mask, b.x, b.mask, b.x])] == [True] * 5
    assert leaves(value)[-2:] == [3, 2.5]  # numbers too; None and strings are not leaves

    doubled = map_tensors(lambda t: t * 2, value)
    assert type(doubled["batch"]) is Batch and type(doubled["out"]) is Out
    assert doubled["out"].note == "kept" and doubled["rest"][1:] == [3, None, (2.5, "s")]
    assert torch.equal(doubled["batch"].mask, b.mask * 2) and torch.equal(doubled["out"].logits, b.x * 2)

    copy = cloned(value)
    assert type(copy["batch"]) is Batch and type(copy["out"]) is Out
    assert copy["batch"].x is not b.x and torch.equal(copy["batch"].x, b.x)
    assert cloned(b.x) is not b.x


def test_frozen_dataclass_with_derived_field_and_none():
    p = Pair(torch.ones(2))
    q = map_tensors(lambda t: t + 1, p)
    assert type(q) is Pair and torch.equal(q.a, torch.full((2,), 2.0)) and q.b is None
    one, zero = torch.ones(1), torch.zeros(1)
    assert [t is u for t, u in zip(tensor_leaves(Pair(one, Pair(zero))), [one, zero])] == [True, True]


def test_zip_map_needs_the_same_structure():
    b = _batch()
    assert zip_map(lambda r, c: c, b, (b.x, b.mask)) is None  # a namedtuple is not a plain tuple
    assert zip_map(lambda r, c: r + c, {"a": 1, "b": 2}, {"a": 10, "b": 20}) == {"a": 11, "b": 22}
    assert zip_map(lambda r, c: r, [1, 2], [1, 2, 3]) is None


def test_cast_like_on_namedtuple():
    ref = Batch(torch.randn(2, 3, dtype=torch.float64), torch.tensor([1, 0]))
    cand = Batch(torch.randn(2, 3), torch.tensor([1, 1], dtype=torch.int32))
    cast = cast_like(ref, cand)
    assert type(cast) is Batch
    assert cast.x.dtype == torch.float32 and torch.equal(cast.x, ref.x.float())
    assert cast.mask.dtype == torch.int64  # non-float tensors only move to the candidate's device
    big = torch.finfo(torch.float64).min
    assert cast_like((big, 1.0), (torch.finfo(torch.float32).min, 2.0)) == (torch.finfo(torch.float32).min, 1.0)
    assert cast_like(ref, (cand.x, cand.mask)) is ref  # structures differ: as it is


def test_cast_like_on_dataclass_output():
    ref = Out(torch.randn(2, dtype=torch.float64), torch.randn(2, dtype=torch.float64), note="ref")
    cand = Out(torch.randn(2), torch.randn(2), note="cand")
    cast = cast_like(ref, cand)
    assert type(cast) is Out and cast.note == "ref" and cast.hidden.dtype == torch.float32


def test_join_samples_keeps_named_tuples_and_dataclasses():
    parts = [Batch(torch.full((1, 2), float(i)), Out(torch.full((1,), float(i)), torch.zeros(1, 3))) for i in range(3)]
    like = Batch(torch.zeros(3, 2), Out(torch.zeros(3), torch.zeros(3, 3)))
    joined = join_samples(parts, like)
    assert type(joined) is Batch and type(joined.mask) is Out
    assert joined.x[:, 0].tolist() == [0.0, 1.0, 2.0] and joined.mask.logits.tolist() == [0.0, 1.0, 2.0]
    assert join_samples(parts, (torch.zeros(3, 2), like.mask)) is None  # structures differ
    assert join_samples([(torch.zeros(1), 1)] * 2, (torch.zeros(2), 2)) is None  # numbers that differ
    assert join_samples([(torch.zeros(1), None, "s")] * 2, (torch.zeros(2), None, "s"))[1:] == (None, "s")
