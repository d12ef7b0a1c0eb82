"""Advice the rules give works: the inline ignore that a rule's docs recommend for a deliberate
pattern really lets the gate pass (it must name the comparison finding that confirms it too)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import torchaudit
from torchaudit.rules.engine import catalogue

MODEL = '''
import torch
import torch.nn as nn
import torch.nn.functional as F


class MCDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return {call}  {comment}


def build_model():
    return MCDropout().eval()


def example_inputs():
    return torch.randn(4, 8)
'''


@pytest.mark.parametrize("code, call", [("TA101", "F.dropout(self.fc(x), 0.1)"),
                                        ("TA102", "F.dropout(self.fc(x), 0.1, training=True)")])
def test_the_recommended_ignore_lets_deliberate_mc_dropout_pass(tmp_path: Path, code: str, call: str) -> None:
    docs = dict(catalogue()[code].sections)["Fix"]
    comment = re.search(r"`(# torchaudit: ignore\[[^\]]+\])`", docs)
    assert comment, f"{code}'s Fix names no inline ignore"
    path = tmp_path / "mc_dropout.py"
    path.write_text(MODEL.format(call=call, comment=comment.group(1)))
    report = torchaudit.scan(str(path), compare=["determinism"])
    assert report.exit_code == 0, [(f.rule, f.message) for f in report.findings if f.severity.value == "error"]
    path.write_text(MODEL.format(call=call, comment=""))  # without the comment the gate fails: the test can fail
    assert torchaudit.scan(str(path), compare=["determinism"]).exit_code == 1
