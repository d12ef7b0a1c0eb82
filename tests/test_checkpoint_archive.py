"""How a checkpoint is read before anything is unpickled: the zip as torch's reader sees it
(TA605 where readers disagree), every pickle of a legacy file or a pre-0.4 tar, pickles that
break after their payload, compressed records, and the opcode scanner's bounds."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import invoke_cli
from tests.crafting import Member, torch_members, zip_bytes
from torchaudit.analyzer.load.checkpoint import load_checkpoint
from torchaudit.analyzer.load.pickle_scan import MAX_GLOBALS, TOO_MANY, danger, scan_pickle
from torchaudit.analyzer.load.zip_archive import read_zip
from torchaudit.errors import CheckpointError

MODEL = "import torch.nn as nn\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n" \
        "        self.fc = nn.Linear(2, 2)\n\n    def forward(self, x):\n        return self.fc(x)\n"


class _Reduce:
    def __init__(self, fn: object, args: tuple) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple:
        return self.fn, self.args


def _payload(canary: Path) -> bytes:
    """A data.pkl that runs ``touch canary`` (posix.system)."""
    return pickle.dumps({"x": _Reduce(os.system, (f"touch {canary}",))}, protocol=2)


def _clean(tmp: Path) -> list[Member]:
    """A clean torch.save zip's members under ``clean/``, data.pkl first."""
    return torch_members({"fc.weight": torch.ones(2, 2), "fc.bias": torch.zeros(2)}, prefix="clean")


def write_zip(path: Path, members: list[Member], **layout: Any) -> None:
    path.write_bytes(zip_bytes(members, **layout))


def _scan(tmp: Path, ckpt: Path) -> tuple[object, dict]:
    model = tmp / "net.py"
    model.write_text(MODEL)
    report = tmp / "r.json"
    res = invoke_cli("scan", str(model), "--checkpoint", str(ckpt), "--static-only", "--json", str(report))
    return res, json.loads(report.read_text()) if report.exists() else {}


def _with_decoy(tmp: Path, canary: Path, how: str) -> list[Member]:
    entries = _clean(tmp)
    pkl = next(e for e in entries if e.name.endswith(b"data.pkl"))
    evil = Member(pkl.name, _payload(canary))
    if how == "duplicate":  # zipfile returns the last of two equal names
        return [evil, *entries]
    if how == "case":
        return [*entries, Member(pkl.name.replace(b"data.pkl", b"DATA.PKL"), _payload(canary))]
    if how == "nul":  # zipfile cuts 'data.pkl\0x' to 'data.pkl'
        return [*entries, Member(pkl.name + b"\0x", _payload(canary))]
    if how == "local-name":
        return [Member(pkl.name, _payload(canary), local_name=pkl.name.replace(b"data", b"dat4")), *entries[1:]]
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["duplicate", "case", "nul", "local-name"])
def test_ambiguous_archive_is_ta605_scanned_and_never_loaded(how: str, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    ckpt = tmp_path / "evil.pt"
    write_zip(ckpt, _with_decoy(tmp_path, canary, how))
    res, data = _scan(tmp_path, ckpt)
    assert not canary.exists()
    assert res.returncode == 1, res.stderr
    rules = {f["rule"] for f in data["findings"]}
    assert "TA605" in rules, f"{how}: {sorted(rules)}"
    named = {f["evidence"]["global"] for f in data["findings"] if f["rule"] == "TA601"}
    assert f"{os.system.__module__}.system" in named
    assert data["target"]["checkpoint_info"]["unpickled"] is False


def test_ambiguous_archive_is_not_loaded_even_when_trusted(tmp_path: Path) -> None:
    entries = _clean(tmp_path)
    ckpt = tmp_path / "twice.pt"
    write_zip(ckpt, [entries[0], *entries])  # a clean data.pkl, twice
    ck = load_checkpoint(ckpt, trust=True)
    assert not ck.loaded and "TA605" in (ck.not_loaded_reason or "")
    assert any("twice" in p for p in ck.archive_problems)


def test_clean_torch_zip_has_no_archive_problems(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(3)}, path)
    archive = read_zip(path)
    assert archive.problems == [] and archive.prefix == "model"
    ck = load_checkpoint(path)
    assert ck.loaded and ck.archive_problems == () and ck.damage is None
    res, data = _scan(tmp_path, path)
    assert "TA605" not in {f["rule"] for f in data["findings"]}


def test_zip64_archive_reads_like_zipfile(tmp_path: Path) -> None:
    path = tmp_path / "z64.pt"
    source = _clean(tmp_path)
    with zipfile.ZipFile(path, "w") as zf:
        for e in source:
            with zf.open(e.name.decode(), "w", force_zip64=True) as fh:
                fh.write(e.data)
    archive = read_zip(path)
    assert archive.problems == []
    with zipfile.ZipFile(path) as zf:
        assert [m.name for m in archive.members] == zf.namelist()
        for m in archive.members:
            with archive.open(m) as fh:
                assert fh.read() == zf.read(m.name)


def test_offsets_written_without_the_leading_bytes_are_damage(tmp_path: Path) -> None:
    """Offsets written as if the leading bytes were absent: zipfile shifts them back and reads
    the archive, miniz reads where they point and finds no directory: torch cannot load it,
    and neither does torchaudit (one line, exit 2)."""
    ckpt = tmp_path / "shifted.pt"
    junk = b"PK\x03\x04" + b"\0" * 60
    write_zip(ckpt, _clean(tmp_path), prefix=junk, shift=-len(junk))
    assert len(zipfile.ZipFile(ckpt).namelist()) == 8
    with pytest.raises(RuntimeError):
        torch.load(ckpt)
    with pytest.raises(CheckpointError, match="central directory"):
        load_checkpoint(ckpt)


def test_directory_away_from_the_end_record_is_ta605(tmp_path: Path) -> None:
    """Bytes between the central directory and its end record: zipfile takes the directory
    to be where the end record implies and shifts every offset; torch's reader does not."""
    ckpt = tmp_path / "gap.pt"
    write_zip(ckpt, _clean(tmp_path), gap=b"\0" * 16)
    assert any("central directory" in p for p in read_zip(ckpt).problems)
    assert "TA605" in (load_checkpoint(ckpt).not_loaded_reason or "")


def test_bad_crc_on_a_payload_still_names_it(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    entries = _clean(tmp_path)
    ckpt = tmp_path / "crc.pt"
    write_zip(ckpt, [Member(entries[0].name, _payload(canary), crc=1234), *entries[1:]])
    with pytest.raises(zipfile.BadZipFile):  # what a zipfile-based scanner meets
        zipfile.ZipFile(ckpt).read(entries[0].name.decode())
    res, data = _scan(tmp_path, ckpt)
    assert res.returncode == 1 and not canary.exists()
    ta601 = next(f for f in data["findings"] if f["rule"] == "TA601")
    assert "CRC" in ta601["message"]


def test_bad_crc_on_a_clean_pickle_is_one_line_exit_2(tmp_path: Path) -> None:
    entries = _clean(tmp_path)
    ckpt = tmp_path / "crc.pt"
    write_zip(ckpt, [Member(entries[0].name, entries[0].data, crc=1234), *entries[1:]])
    res, _ = _scan(tmp_path, ckpt)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "CRC" in res.stderr and "Traceback" not in res.stderr


def test_broken_pickle_after_its_payload_is_ta601(tmp_path: Path) -> None:
    """nullifAI: the payload runs, then the stream breaks and pickle.load raises."""
    canary = tmp_path / "canary"
    raw = _payload(canary)
    ckpt = tmp_path / "broken.pkl"
    ckpt.write_bytes(raw[:-1] + b"\xff")  # STOP replaced by a byte that is no opcode
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(ckpt.read_bytes())
    assert canary.exists()  # the positive control: it ran before it broke
    canary.unlink()
    res, data = _scan(tmp_path, ckpt)
    assert res.returncode == 1 and not canary.exists()
    ta601 = next(f for f in data["findings"] if f["rule"] == "TA601")
    assert ta601["evidence"]["dangerous"] and "breaks" in ta601["message"]


def test_deflated_records_load_without_mmap(tmp_path: Path) -> None:
    """torch.load(mmap=True) hands back the compressed bytes of a deflated record as data."""
    src = tmp_path / "nan.pt"
    torch.save({"fc.weight": torch.full((2, 2), float("nan")), "fc.bias": torch.zeros(2)}, src)
    entries = [Member(m.name, m.data, method=8) for m in torch_members(torch.load(src))]
    ckpt = tmp_path / "deflated.pt"
    write_zip(ckpt, entries)
    ck = load_checkpoint(ckpt)
    assert ck.tensors is not None and torch.isnan(ck.tensors["fc.weight"]).all()
    res, data = _scan(tmp_path, ckpt)
    assert "TA307" in {f["rule"] for f in data["findings"]}


def test_compression_bomb_is_refused_in_one_line(tmp_path: Path) -> None:
    entries = _clean(tmp_path)
    ckpt = tmp_path / "bomb.pt"
    bomb = Member(entries[0].name.replace(b"data.pkl", b"data/9"), b"\0" * (64 << 20), method=8)
    write_zip(ckpt, [*entries, bomb])
    assert ckpt.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match="compression bomb"):
        load_checkpoint(ckpt)


def test_unknown_compression_method_is_one_line(tmp_path: Path) -> None:
    entries = _clean(tmp_path)
    ckpt = tmp_path / "method.pt"
    write_zip(ckpt, [Member(entries[0].name, entries[0].data, method=99), *entries[1:]])
    res, _ = _scan(tmp_path, ckpt)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "method 99" in res.stderr


def test_member_names_that_are_not_utf8_are_one_line(tmp_path: Path) -> None:
    """zipfile raises UnicodeDecodeError on such a name (flag 0x800 says UTF-8); torch cannot
    load the archive either. The scan still reads it, and the load fails in one line."""
    canary = tmp_path / "canary"
    entries = _clean(tmp_path)
    with pytest.raises(UnicodeDecodeError):
        write_zip(tmp_path / "probe.pt", [*entries, Member(b"clean/\xff\xfe.bin", b"x", flags=0x800)])
        zipfile.ZipFile(tmp_path / "probe.pt")
    ckpt = tmp_path / "names.pt"
    write_zip(ckpt, [*entries, Member(b"clean/\xff\xfe.bin", b"x", flags=0x800)])
    with pytest.raises(CheckpointError, match="could not be loaded"):
        load_checkpoint(ckpt)
    evil = tmp_path / "evil.pt"
    write_zip(evil, [Member(entries[0].name, _payload(canary)), *entries[1:], Member(b"clean/\xff.bin", b"x", flags=0x800)])
    assert f"{os.system.__module__}.system" in {g.name for g in load_checkpoint(evil).unsafe_globals}


def test_torch_zip_named_safetensors_is_read_by_content(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    torch.save({"w": torch.ones(2)}, path)
    ck = load_checkpoint(path)
    assert ck.format == "zip" and ck.tensors is not None and torch.equal(ck.tensors["w"], torch.ones(2))
    assert ck.describe()["suffix_mismatch"] == "named .safetensors but is a torch.save zip file"


# --- legacy files and tars -------------------------------------------------------------------

def _legacy_bytes(obj: object, tmp: Path) -> bytes:
    path = tmp / "legacy.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    return path.read_bytes()


def test_legacy_payload_in_any_of_its_pickles_is_found(tmp_path: Path) -> None:
    """The system-info pickle is the third of five; torch unpickles it like the others."""
    canary = tmp_path / "canary"
    raw = _legacy_bytes({"fc.weight": torch.zeros(2, 2)}, tmp_path)
    stream = io.BytesIO(raw)
    starts = []
    for _ in range(5):
        starts.append(stream.tell())
        assert scan_pickle(stream, len(raw) - stream.tell()).broken is None
    evil = pickle.dumps(_Reduce(os.system, (f"touch {canary}",)), protocol=2)
    ckpt = tmp_path / "sysinfo.pt"
    ckpt.write_bytes(raw[: starts[2]] + evil + raw[starts[3] :])
    ck = load_checkpoint(ckpt)
    assert ck.format == "legacy" and not ck.loaded
    assert any(g.name == f"{os.system.__module__}.system" and g.dangerous for g in ck.unsafe_globals)
    assert not canary.exists()


def test_legacy_magic_through_the_memo(tmp_path: Path) -> None:
    """The magic number pushed, memoized, popped and fetched back is still the value torch's
    _legacy_load reads, so the payload in the fourth pickle is found."""
    canary = tmp_path / "canary"
    raw = _legacy_bytes({"fc.weight": torch.zeros(2, 2), "x": _Reduce(os.system, (f"touch {canary}",))}, tmp_path)
    first = io.BytesIO(raw)
    pickle.load(first)
    magic = 0x1950A86A20F9469CFC6C.to_bytes(10, "little")
    memo_magic = b"\x80\x02\x8a\x0a" + magic + b"q\x000h\x00."  # LONG1, BINPUT 0, POP, BINGET 0, STOP
    ckpt = tmp_path / "memo.pt"
    ckpt.write_bytes(memo_magic + raw[first.tell() :])
    ck = load_checkpoint(ckpt)
    assert ck.format == "legacy" and not ck.loaded
    assert f"{os.system.__module__}.system" in {g.name for g in ck.unsafe_globals}
    torch.load(ckpt, weights_only=False)  # the positive control
    assert canary.exists()


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_pre_04_tar_payload_is_found_and_not_loaded(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    ckpt = tmp_path / "old.tar.pt"
    storages = pickle.dumps(0, protocol=2) + pickle.dumps([], protocol=2)
    _tar(ckpt, {"sys_info": pickle.dumps({}), "storages": storages, "tensors": pickle.dumps(0, protocol=2),
                "pickle": pickle.dumps(_Reduce(os.system, (f"touch {canary}",)), protocol=2)})
    torch.load(ckpt, weights_only=False)  # the positive control: torch runs it
    assert canary.exists()
    canary.unlink()
    ck = load_checkpoint(ckpt)
    assert ck.format == "tar" and not ck.loaded
    assert f"{os.system.__module__}.system" in {g.name for g in ck.unsafe_globals}
    assert not canary.exists()


def test_pre_04_tar_storage_records_are_walked(tmp_path: Path) -> None:
    """A payload in the second storage's pickle, after the first storage's raw bytes."""
    canary = tmp_path / "canary"
    first = pickle.dumps(("0", "cpu", torch.FloatStorage), protocol=2) + struct.pack("<q", 3) + b"\0" * 12
    evil = pickle.dumps(_Reduce(os.system, (f"touch {canary}",)), protocol=2)
    storages = pickle.dumps(2, protocol=2) + first + evil
    ckpt = tmp_path / "old.tar.pt"
    _tar(ckpt, {"storages": storages, "tensors": pickle.dumps(0, protocol=2), "pickle": pickle.dumps({}, protocol=2)})
    ck = load_checkpoint(ckpt)
    assert f"{os.system.__module__}.system" in {g.name for g in ck.unsafe_globals}


# --- the opcode scanner ----------------------------------------------------------------------

def test_stack_global_takes_the_two_strings_below_it() -> None:
    """Strings pushed and popped around must not shift STACK_GLOBAL's operands."""
    body = b"\x8c\x02os\x8c\x04junk0\x8c\x06system\x93."
    scan = scan_pickle(io.BytesIO(b"\x80\x04" + body), len(body) + 2)
    assert scan.globals == {"os.system"} and scan.broken is None


def test_huge_length_claims_break_without_allocating() -> None:
    data = b"\x80\x04\x8e" + (2**60).to_bytes(8, "little") + b"."
    scan = scan_pickle(io.BytesIO(data), len(data))
    assert scan.broken is not None and "claims" in scan.broken


def test_globals_are_listed_up_to_a_cap() -> None:
    body = b"".join(b"cmod%d\nname\n0" % k for k in range(MAX_GLOBALS + 50)) + b"N."
    scan = scan_pickle(io.BytesIO(body), len(body))
    assert len(scan.globals) == MAX_GLOBALS + 1 and TOO_MANY in scan.globals
    assert danger(TOO_MANY)


@pytest.mark.parametrize("name", [
    "posixpath.os.system", "torch.serialization.os.system", "pkgutil.resolve_name",
    "torch.fx.graph_module.reduce_graph_module", "_operator.methodcaller", "_operator.attrgetter",
    "timeit.timeit", "cProfile.run", "pydoc.pipepager", "torch.utils.collect_env.run", "builtins.dict.get",
    "<copyreg extension>",
])
def test_known_gadgets_are_dangerous(name: str) -> None:
    assert danger(name)


@pytest.mark.parametrize("name", ["collections.OrderedDict", "mylib.io.Reader", "numpy.core.multiarray._reconstruct"])
def test_ordinary_globals_are_not_called_dangerous(name: str) -> None:
    assert not danger(name)


def test_checkpoint_command_calls_an_ambiguous_archive_so(tmp_path: Path) -> None:
    entries = _clean(tmp_path)
    ckpt = tmp_path / "twice.pt"
    write_zip(ckpt, [entries[0], *entries])
    report = tmp_path / "r.json"
    res = invoke_cli("checkpoint", str(ckpt), "--json", str(report))
    assert res.returncode == 1 and "AMBIGUOUS" in res.stdout and "TA605" in res.stdout
    (entry,) = json.loads(report.read_text())["checkpoint_files"]
    assert entry["verdict"] == "ambiguous" and entry["archive_problems"]
    snippet = invoke_cli("checkpoint", str(ckpt), "--allowlist")
    assert "add_safe_globals" not in snippet.stdout and "TA605" in snippet.stdout


def test_file_strings_in_errors_are_printable_and_cut(tmp_path: Path) -> None:
    """A member name with ANSI escapes, in a one-line error; a 5 MB dict key, in another."""
    entries = _clean(tmp_path)
    ckpt = tmp_path / "escapes.pt"
    evil_name = entries[0].name.replace(b"data.pkl", b"\x1b[1A\x1b[2K\x1b[32mPASS.pkl")
    write_zip(ckpt, [*entries, Member(evil_name, b"\x80\x02N")])  # a pickle member that breaks
    res, _ = _scan(tmp_path, ckpt)
    assert res.returncode == 2 and "\x1b" not in res.stderr and "\\x1b[32mPASS" in res.stderr
    big = tmp_path / "bigkey.pt"
    torch.save({"x" * (5 << 20) + "\x1b[32m": 1}, big)
    res, _ = _scan(tmp_path, big)
    assert res.returncode == 2 and len(res.stderr) < 10_000 and "\x1b" not in res.stderr


def test_checkpoint_command_on_only_unreadable_files_gives_no_verdict(tmp_path: Path) -> None:
    entries = _clean(tmp_path)
    for e in entries:
        e.flags = 1  # "encrypted": torch's reader refuses every record
    ckpt = tmp_path / "encrypted.pt"
    write_zip(ckpt, entries)
    res = invoke_cli("checkpoint", str(ckpt))
    assert res.returncode == 2 and "PASS" not in res.stdout + res.stderr
    assert res.stderr.count("\n") == 1 and "encryption" in res.stderr


def test_pre_04_tar_with_a_negative_storage_size_ends_as_damage(tmp_path: Path) -> None:
    """A size that would seek back to the same record must not loop."""
    record = pickle.dumps(("0", "cpu", torch.FloatStorage), protocol=2)
    storages = pickle.dumps(3, protocol=2) + record + struct.pack("<q", -(len(record) + 8) // 4)
    ckpt = tmp_path / "loop.tar.pt"
    _tar(ckpt, {"storages": storages, "tensors": pickle.dumps(0, protocol=2), "pickle": pickle.dumps({}, protocol=2)})
    with pytest.raises(CheckpointError, match="negative size"):
        load_checkpoint(ckpt)
