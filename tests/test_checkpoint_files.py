"""Bad checkpoint files exit 2 with one line; every common good format loads and unwraps."""

from __future__ import annotations

import json
import struct
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

from tests.conftest import invoke_cli
from torchaudit.analyzer.load.checkpoint import load_checkpoint

MODEL = textwrap.dedent(
    """
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(4, 8)
            self.fc2 = nn.Linear(8, 2)

        def forward(self, x):
            return self.fc2(self.fc1(x).relu())
    """
)


class Net(nn.Module):  # the same architecture, to build checkpoints here
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 2)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "net.py"
    path.write_text(MODEL)
    return path


def _truncated_zip(p: Path) -> None:
    torch.save(Net().state_dict(), p)
    p.write_bytes(p.read_bytes()[:300])


def _truncated_safetensors(p: Path) -> None:
    save_file(Net().state_dict(), str(p))
    p.write_bytes(p.read_bytes()[:-20])


def _truncated_legacy(p: Path) -> None:
    torch.save(Net().state_dict(), p, _use_new_zipfile_serialization=False)
    p.write_bytes(p.read_bytes()[:40])


BAD = {
    "missing": (lambda p: None, "checkpoint not found"),
    "empty": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "directory": (lambda p: p.mkdir(), "is a directory without weights"),
    "text": (lambda p: p.write_text("epoch,loss\n1,0.5\n2,0.4\n"), "is a text file, not a checkpoint"),
    "png": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)), "is a PNG image, not a checkpoint"),
    "truncated-zip": (_truncated_zip, "is a truncated or damaged zip (torch.save) file"),
    "truncated-safetensors": (_truncated_safetensors, "is a truncated or damaged safetensors file"),
    "truncated-legacy": (_truncated_legacy, "is a truncated or damaged legacy torch.save file"),
    "bad-safetensors-header": (
        lambda p: p.write_bytes(struct.pack("<Q", 15) + b'{"a": nonsense}'),
        "is a damaged safetensors file: its header is not JSON",
    ),
    "not-a-state-dict": (lambda p: torch.save([1, 2, 3], p), "holds a list, not a state dict"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_checkpoint_exits_2_with_one_line(case: str, tmp_path: Path, model_file: Path) -> None:
    make, phrase = BAD[case]
    path = tmp_path / "ckpt.pt"
    make(path)
    report = tmp_path / "r.json"
    res = invoke_cli("scan", str(model_file), "--checkpoint", str(path), "--json", str(report))
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert phrase in lines[0] and str(path) in lines[0], lines[0]
    assert "expected" in lines[0] or case in ("missing", "not-a-state-dict", "bad-safetensors-header") or case.startswith("truncated")
    assert not report.exists()


def test_checkpoint_of_another_model_is_findings_not_exit_2(tmp_path: Path, model_file: Path) -> None:
    other = nn.Sequential(nn.Linear(4, 16), nn.Linear(16, 2))
    other_sd = {"fc1.weight": torch.zeros(16, 4), "fc1.bias": torch.zeros(16), "head.weight": torch.zeros(2, 16)}
    path = tmp_path / "other.pt"
    torch.save(other_sd, path)
    report = tmp_path / "r.json"
    res = invoke_cli("scan", str(model_file), "--checkpoint", str(path), "--json", str(report))
    assert res.returncode == 1, res.stderr
    data = json.loads(report.read_text())
    found = {(f["rule"], f["module"]) for f in data["findings"]}
    assert ("TA304", "fc1") in found and ("TA301", "fc2") in found
    assert any(f["rule"] == "TA302" and "head" in f["message"] for f in data["findings"])
    strict = data["target"]["checkpoint_info"]["strict_load"]
    assert strict["ok"] is False and "size mismatch" in strict["error"]
    del other


def _plain(p: Path) -> dict:
    torch.save(Net().state_dict(), p)
    return {"format": "zip", "wrapper_key": None}


def _wrapped(key: str):
    def make(p: Path) -> dict:
        torch.save({key: Net().state_dict(), "epoch": 3, "optimizer": {"lr": 0.1}}, p)
        return {"format": "zip", "wrapper_key": key}

    return make


def _lightning(p: Path) -> dict:
    sd = {k: v for k, v in Net().state_dict().items()}
    torch.save({"state_dict": sd, "pytorch-lightning_version": "2.4.0", "global_step": 10}, p)
    return {"format": "zip", "wrapper_key": "state_dict", "producer": "lightning"}


def _legacy(p: Path) -> dict:
    torch.save(Net().state_dict(), p, _use_new_zipfile_serialization=False)
    return {"format": "legacy", "wrapper_key": None}


def _safetensors(p: Path) -> dict:
    save_file(Net().state_dict(), str(p))
    return {"format": "safetensors", "wrapper_key": None}


GOOD = {
    "plain.pt": _plain,
    "wrapped_state_dict.pth": _wrapped("state_dict"),
    "wrapped_model.bin": _wrapped("model"),
    "wrapped_model_state_dict.pt": _wrapped("model_state_dict"),
    "lightning.ckpt": _lightning,
    "legacy.pt": _legacy,
    "model.safetensors": _safetensors,
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_formats_load_and_unwrap(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    expected = GOOD[name](path)
    ckpt = load_checkpoint(path)
    for field, value in expected.items():
        assert getattr(ckpt, field) == value, field
    assert ckpt.entries is not None
    assert {k: (list(e.shape), e.dtype) for k, e in ckpt.entries.items()} == {
        k: (list(v.shape), v.dtype) for k, v in Net().state_dict().items()
    }
    assert not ckpt.unsafe_globals and not ckpt.is_pickled_module


def test_lightning_checkpoint_through_cli_names_the_wrapper(tmp_path: Path, model_file: Path) -> None:
    path = tmp_path / "last.ckpt"
    sd = {f"model.{k}": v for k, v in Net().state_dict().items()}
    torch.save({"state_dict": sd, "pytorch-lightning_version": "2.4.0"}, path)
    report = tmp_path / "r.json"
    res = invoke_cli("scan", str(model_file), "--checkpoint", str(path), "--json", str(report))
    data = json.loads(report.read_text())
    info = data["target"]["checkpoint_info"]
    assert res.returncode == 1  # TA303 is an error
    assert (info["wrapper_key"], info["producer"]) == ("state_dict", "lightning")
    assert info["strict_load"] == {"ok": True, "error": None, "prefix_fix": "strip 'model.'"}
    assert [f["rule"] for f in data["findings"] if f["rule"].startswith("TA30")] == ["TA303"]
    assert "unwrapped from 'state_dict' (Lightning)" in res.stdout
    assert "loaded into a copy of the model with strict=True after strip 'model.'" in res.stdout
