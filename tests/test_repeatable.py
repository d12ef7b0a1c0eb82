"""Same command, same seed, same report: the model's random initial weights, its example inputs
and every random op in the comparisons are drawn from ``--seed``, so reports do not churn."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.conftest import invoke_cli


def _scan(tmp_path: Path, name: str, *flags: str) -> str:
    out = tmp_path / name
    res = invoke_cli("scan", "examples/mlp_bn_dropout.py", "--json", str(out), *flags)
    assert res.returncode in (0, 1), res.stderr
    return out.read_text()


def test_the_same_seed_gives_a_byte_identical_report_and_another_seed_another_one(tmp_path: Path) -> None:
    before = torch.random.get_rng_state()
    one, two = _scan(tmp_path, "one.json"), _scan(tmp_path, "two.json")
    assert one == two  # weights from the factory, inputs from example_inputs(), dropout masks: all seeded
    other = json.loads(_scan(tmp_path, "other.json", "--seed", "7"))
    first = json.loads(one)
    differs = [c["output"] for c in other["comparisons"]] != [c["output"] for c in first["comparisons"]]
    assert differs, "another --seed draws other weights, inputs and masks"
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG is left as it was
