"""Safetensors files: a malformed header is one line and exit 2, never a traceback; every check
is one the safetensors library makes too; a big header is one finding per group of keys; a
safetensors file named .pt is still read as safetensors, and the report says so."""

from __future__ import annotations

import json
import struct
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

import torchaudit
from tests.conftest import invoke_cli
from tests.json_shape import report_json
from torchaudit.analyzer.load.checkpoint import load_checkpoint
from torchaudit.analyzer.load.checkpoint_files import suffix_note
from torchaudit.errors import CheckpointError

MODEL = textwrap.dedent(
    """
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x)
    """
)


class Net(nn.Module):  # MODEL, to scan from Python
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "net.py"
    path.write_text(MODEL)
    return path


def write(path: Path, header: Any = None, data: bytes = b"", raw: bytes | None = None, length: int | None = None) -> None:
    """A safetensors file: the 8-byte length, the header (JSON of ``header``, or ``raw``), ``data``."""
    text = raw if raw is not None else json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)


def one(dtype: Any = "F32", shape: Any = (2,), offsets: Any = (0, 8), name: str = "fc.weight") -> dict[str, Any]:
    return {name: {"dtype": dtype, "shape": list(shape) if isinstance(shape, tuple) else shape,
                   "data_offsets": list(offsets) if isinstance(offsets, tuple) else offsets}}


def two(first: tuple[int, int], second: tuple[int, int]) -> dict[str, Any]:
    return {**one(offsets=first), **one(offsets=second, name="fc.bias")}


Make = Callable[[Path], None]
# case -> (how to build the file, what the one line says)
MALFORMED: dict[str, tuple[Make, str]] = {
    "offsets-one-number": (lambda p: write(p, one(offsets=[0]), bytes(8)), "has data_offsets [0], not two integers"),
    "offsets-three-numbers": (lambda p: write(p, one(offsets=[0, 8, 8]), bytes(8)), "not two integers 0 <= begin <= end"),
    "offsets-negative": (lambda p: write(p, one(offsets=[-8, 0]), bytes(8)), "has data_offsets [-8, 0]"),
    "offsets-floats": (lambda p: write(p, one(offsets=[0.0, 8.0]), bytes(8)), "has data_offsets [0.0, 8.0]"),
    "offsets-strings": (lambda p: write(p, one(offsets=["0", "8"]), bytes(8)), "not two integers"),
    "offsets-booleans": (lambda p: write(p, one(shape=[0], offsets=[False, False])), "has data_offsets [False, False]"),
    "offsets-reversed": (lambda p: write(p, one(offsets=[8, 0]), bytes(8)), "has data_offsets [8, 0]"),
    "offsets-span-wrong-size": (lambda p: write(p, one(offsets=[0, 12]), bytes(12)), "(8 bytes) but its data_offsets span 12 bytes"),
    "offsets-past-the-file": (lambda p: write(p, one(), bytes(4)), "is a truncated or damaged safetensors file"),
    "offsets-not-from-zero": (lambda p: write(p, one(offsets=[4, 12]), bytes(12)), "begins at byte 4 of the data section, not 0"),
    "offsets-overlap": (lambda p: write(p, two((0, 8), (4, 12)), bytes(12)), "overlap"),
    "offsets-same-bytes": (lambda p: write(p, two((0, 8), (0, 8)), bytes(8)), "overlap"),
    "offsets-gap": (lambda p: write(p, two((0, 8), (12, 20)), bytes(20)), "4 bytes between tensors"),
    "bytes-after-the-last-tensor": (lambda p: write(p, one(), bytes(16)), "8 bytes after its last tensor belong to none"),
    "dtype-number": (lambda p: write(p, one(dtype=5), bytes(8)), "has dtype 5, not a dtype name"),
    "dtype-unknown": (lambda p: write(p, one(dtype="F128"), bytes(8)), "has dtype 'F128', which is no safetensors dtype"),
    "shape-string": (lambda p: write(p, one(shape="2"), bytes(8)), "has shape '2', not a list of non-negative"),
    "shape-negative": (lambda p: write(p, one(shape=[-2]), bytes(8)), "has shape [-2]"),
    "shape-float": (lambda p: write(p, one(shape=[2.0]), bytes(8)), "has shape [2.0]"),
    "shape-overflows": (lambda p: write(p, one(shape=[2**40, 2**40]), bytes(8)), "but its data_offsets span 8 bytes"),
    "shape-5000-digits": (lambda p: write(p, raw=b'{"w":{"dtype":"F32","shape":[' + b"9" * 5000 + b'],"data_offsets":[0,8]}}',
                                          data=bytes(8)), "its header is not JSON"),
    "entry-not-an-object": (lambda p: write(p, {"fc.weight": 5}), "is described by 5, not an object"),
    "entry-missing-offsets": (lambda p: write(p, {"fc.weight": {"dtype": "F32", "shape": [2]}}, bytes(8)),
                              "not an object with dtype, shape and data_offsets"),
    "metadata-list": (lambda p: write(p, {"__metadata__": [1], **one()}, bytes(8)), "its __metadata__ is [1], not a map"),
    "metadata-number-value": (lambda p: write(p, {"__metadata__": {"epoch": 3}, **one()}, bytes(8)), "not a map of strings to strings"),
    "metadata-nested": (lambda p: write(p, {"__metadata__": {"a": {"b": "c"}}, **one()}, bytes(8)), "not a map of strings"),
    "nested-100000-deep": (lambda p: write(p, raw=b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"), "nested too deeply"),
    "not-utf8": (lambda p: write(p, raw=b'{"fc.w\xffeight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', data=bytes(8)),
                 "its header is not UTF-8 text"),
    "header-past-the-file": (lambda p: write(p, one(), length=1000), "its header claims 1000 bytes"),
    "duplicate-field": (lambda p: write(p, raw=b'{"w":{"dtype":"F32","dtype":"F64","shape":[2],"data_offsets":[0,8]}}', data=bytes(8)),
                        "its header names 'dtype' twice"),
    "name-with-a-newline": (lambda p: write(p, one(dtype=5, name="fc\n\x1b[32mPASS"), bytes(8)), r"tensor 'fc\n\x1b[32mPASS'"),
}
# what the safetensors library (safe_open) accepts where torchaudit refuses: one name given twice
LIBRARY_ACCEPTS = {"duplicate-name"}
MALFORMED["duplicate-name"] = (
    lambda p: write(p, raw=b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
                    data=bytes(8)),
    "its header names 'w' twice",
)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_header_is_one_line_and_exit_2(case: str, tmp_path: Path, model_file: Path) -> None:
    make, phrase = MALFORMED[case]
    path = tmp_path / "model.safetensors"
    make(path)
    res = invoke_cli("scan", str(model_file), "--checkpoint", str(path), "--json", str(tmp_path / "r.json"))
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert str(path) in lines[0] and phrase in lines[0], lines[0]
    assert not (tmp_path / "r.json").exists()
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(path)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_the_safetensors_library_refuses_the_same_files(case: str, tmp_path: Path) -> None:
    """Every refusal above is one the library makes too (it is no stricter reading of the format),
    except a name given twice, which the library's JSON reader silently collapses to one."""
    path = tmp_path / "model.safetensors"
    MALFORMED[case][0](path)
    if case in LIBRARY_ACCEPTS:
        with safe_open(str(path), framework="pt") as f:
            assert list(f.keys()) == ["w"]
        return
    with pytest.raises(SafetensorError):
        with safe_open(str(path), framework="pt") as f:
            [f.get_slice(k).get_shape() for k in f.keys()]


def test_entries_come_from_the_header_and_values_read_lazily_by_key(tmp_path: Path) -> None:
    state = {"b": torch.arange(6, dtype=torch.float32).view(2, 3), "a": torch.tensor([1, 2], dtype=torch.int64),
             "c": torch.tensor([0.5], dtype=torch.bfloat16), "empty": torch.zeros(0, 3)}
    path = tmp_path / "m.safetensors"
    save_file(state, str(path), metadata={"format": "pt"})
    ckpt = load_checkpoint(path)
    assert ckpt.entries is not None and ckpt.tensors is not None
    assert list(ckpt.entries) == ["a", "b", "c", "empty"]  # sorted, as the library lists them
    assert {k: (e.shape, e.dtype) for k, e in ckpt.entries.items()} == {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
    assert ckpt.metadata == {"format": "pt"}
    assert "b" in ckpt.tensors and "z" not in ckpt.tensors and len(ckpt.tensors) == 4
    for key, value in state.items():
        assert torch.equal(ckpt.tensors[key], value), key
    with pytest.raises(KeyError):
        ckpt.tensors["z"]
    read = ckpt.tensors["b"]
    read += 1  # a copy-on-write map: the file keeps its bytes
    assert torch.equal(load_checkpoint(path).tensors["b"], state["b"])  # type: ignore[index]  # loaded above


def test_thousands_of_unexpected_keys_are_one_finding_per_group(tmp_path: Path) -> None:
    """A checkpoint of another model with a key per module (here 3,000 modules under ``blocks``)
    is one TA302 finding for the group, with the count; never one finding per module."""
    path = tmp_path / "other.safetensors"
    state = {f"blocks.{i}.weight": torch.zeros(2) for i in range(3000)} | {"fc.weight": torch.zeros(2, 4), "fc.bias": torch.zeros(2)}
    save_file(state, str(path))
    report = torchaudit.scan(Net(), torch.zeros(1, 4), checkpoint=str(path), static_only=True)
    [unexpected] = [f for f in report.findings if f.rule == "TA302"]
    assert "under blocks" in unexpected.message and "and 2,992 more" in unexpected.message, unexpected.message
    assert len(unexpected.evidence["unexpected_keys"]) == 3000
    assert "TA301" not in {f.rule for f in report.findings}


def test_a_few_modules_keep_one_finding_each(tmp_path: Path) -> None:
    from torchaudit.analyzer.load.checkpoint_match import by_owner

    assert by_owner(["a.x", "a.y", "b.c.z", "w"]) == {"a": ["x", "y"], "b.c": ["z"], "": ["w"]}
    many = [f"enc.layers.{i}.{p}.weight" for i in range(30) for p in ("q", "k")] + ["head.weight"]
    # 61 modules: over 40, cut to the layers (31 groups); over 20, to enc.layers (2 groups)
    assert by_owner(many, limit=40) == {**{f"enc.layers.{i}": ["q.weight", "k.weight"] for i in range(30)}, "head": ["weight"]}
    assert by_owner(many, limit=20) == {"enc.layers": [f"{i}.{p}.weight" for i in range(30) for p in ("q", "k")],
                                        "head": ["weight"]}
    assert by_owner(many, limit=1) == {"": many}


@pytest.mark.parametrize("name", ["weights.pt", "pytorch_model.bin"])
def test_safetensors_named_like_a_pickle_is_read_as_safetensors_and_said(name: str, tmp_path: Path, model_file: Path) -> None:
    path = tmp_path / name
    save_file({"fc.weight": torch.zeros(2, 4), "fc.bias": torch.zeros(2)}, str(path))
    ckpt = load_checkpoint(path)
    note = f"named {path.suffix} but is a safetensors file"
    assert (ckpt.format, ckpt.describe()["suffix_mismatch"]) == ("safetensors", note)
    assert not ckpt.imports and not ckpt.unsafe_globals  # never handed to a pickle reader
    out = tmp_path / "r.json"
    res = invoke_cli("scan", str(model_file), "--checkpoint", str(path), "--json", str(out), "--html", str(tmp_path / "r.html"))
    assert res.returncode == 0, res.stderr
    assert f"(safetensors; {note};" in res.stdout
    info = json.loads(out.read_text())["target"]["checkpoint_info"]
    assert (info["format"], info["suffix_mismatch"], info["strict_load"]["ok"]) == ("safetensors", note, True)
    assert f"{note}: read as such" in (tmp_path / "r.html").read_text()
    # the model-free check says it too, in its block and its JSON
    res = invoke_cli("checkpoint", str(path), "--json", str(tmp_path / "c.json"))
    assert res.returncode == 0 and f"file name    {note}: read as what it is" in res.stdout, res.stdout
    [entry] = json.loads((tmp_path / "c.json").read_text())["checkpoint_files"]
    assert (entry["format"], entry["suffix_mismatch"]) == ("safetensors", note)


def test_no_note_when_the_suffix_agrees_or_names_no_format(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    data = report_json(torchaudit.scan(nn.Linear(2, 1), torch.zeros(1, 2), checkpoint=str(path), static_only=True))
    assert data["target"]["checkpoint_info"]["suffix_mismatch"] is None
    assert suffix_note(Path("model.weights"), "safetensors") is None  # no format named: nothing to contradict
    assert suffix_note(Path("ckpt.PT"), "zip") is None and suffix_note(Path("ckpt.bin"), "legacy") is None
    assert suffix_note(Path("model.safetensors"), "zip") == "named .safetensors but is a torch.save zip file"
    assert suffix_note(Path("model.safetensors"), "pickle") == "named .safetensors but is a raw pickle"
