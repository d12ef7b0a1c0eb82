"""Hostile checkpoints that run nothing: files that claim far more than they hold, or that a
reader may choke on. DESIGN.md (Performance): any checkpoint under 10 MB is judged in under
10 s and 512 MB RSS, whatever it claims to hold. Each probe writes one file under 10 MB and
says, in ``EXPECT``, what a scanner should do with it: a one-line error (exit 2) or a finding
(exit 1), never a traceback, a hang or gigabytes of memory.

``PROBES[name] = (fn, suffix)``: ``fn(path)`` writes the file; ``suffix`` is the file's
extension (``.safetensors`` for the safetensors probes, so readers dispatch on it).
``FINDS[name]``: the rule a correct scan must report for it (absent: an error is as good).
"""

from __future__ import annotations

import io
import json
import math
import pickle
import struct
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import torch

from tests.crafting import Member, member, proto4, s, torch_members, zip_bytes

Probe = Callable[[Path], None]
PROBES: dict[str, tuple[Probe, str]] = {}
EXPECT: dict[str, str] = {}  # name -> what a scanner should do: "exit 2 (...)" or "finding ..."
FINDS: dict[str, str] = {}  # name -> the rule a correct scan reports


def probe(suffix: str, expect: str, finds: str | None = None) -> Callable[[Probe], Probe]:
    def register(fn: Probe) -> Probe:
        assert fn.__doc__ and fn.__name__ not in PROBES
        PROBES[fn.__name__], EXPECT[fn.__name__] = (fn, suffix), expect
        if finds:
            FINDS[fn.__name__] = finds
        return fn

    return register


# --- helpers ----------------------------------------------------------------------------------

_MiB = 1 << 20


def deflated_zeros(prefix: bytes, n_zeros: int, suffix: bytes) -> tuple[bytes, int, int]:
    """A raw deflate stream of ``prefix + n_zeros zero bytes + suffix`` (``n_zeros`` a
    multiple of 1 MiB), its CRC-32 and its size, built from one compressed MiB of zeros
    repeated (each part ends with a full flush, so the parts concatenate), never the whole."""
    assert n_zeros % _MiB == 0

    def part(data: bytes, last: bool) -> bytes:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush(zlib.Z_FINISH if last else zlib.Z_FULL_FLUSH)

    zero = bytes(_MiB)
    crc = zlib.crc32(prefix)
    for _ in range(n_zeros // _MiB):
        crc = zlib.crc32(zero, crc)
    crc = zlib.crc32(suffix, crc)
    stream = part(prefix, False) + part(zero, False) * (n_zeros // _MiB) + part(suffix, True)
    return stream, crc, len(prefix) + n_zeros + len(suffix)


class _Rebuild:
    """Pickles as ``torch._utils._rebuild_tensor_v2(storage, 0, shape, stride, ...)`` over a
    storage whose persistent id is ``pid``: a tensor that claims what ``pid`` says."""

    def __init__(self, pid: tuple, shape: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.pid, self.shape, self.stride = pid, shape, stride

    def __reduce__(self) -> tuple:
        return torch._utils._rebuild_tensor_v2, (_Pid(self.pid), 0, self.shape, self.stride, False, OrderedDict())


class _Pid:
    def __init__(self, pid: tuple) -> None:
        self.pid = pid


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: object) -> object:
        return obj.pid if isinstance(obj, _Pid) else None


def claiming_pickle(state: dict[str, _Rebuild]) -> bytes:
    """A data.pkl as torch.save writes it (protocol 2, persistent ids), for tensors that claim
    any storage size."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(state)
    return buf.getvalue()


# --- probes -----------------------------------------------------------------------------------


@probe(".pt", "finding (TA307 NaN; TA304 shape) in well under 10 s: 2**30 elements are one value", "TA307")
def stride0_nan_expand(path: Path) -> None:
    """``torch.full((1,), nan).expand(2**30)`` saved: a 4 GiB float tensor (stride 0) over a
    4-byte storage. A scanner that materializes it (``.contiguous()``, ``isnan().any()`` on a
    copy) takes 4 GiB; the NaN check must look at the storage (or the strides) instead."""
    torch.save({"fc.weight": torch.full((1,), math.nan).expand(2**30)}, path)
    assert path.stat().st_size < 4096


@probe(".pt", "exit 2 (one line: the storage inflates past the file's size) or a TA304 finding; never 1 GiB RSS")
def zip_bomb_storage(path: Path) -> None:
    """A ~1 MB torch zip whose ``archive/data/0`` member inflates to 1 GiB of zeros (a float
    tensor of 2**28 elements): torch reads it whole unless memory-mapped, and a memory map of a
    deflated member maps the compressed bytes."""
    n = 2**28
    pkl = claiming_pickle({"fc.weight": _Rebuild(("storage", torch.FloatStorage, "0", "cpu", n), (2**14, 2**14), (2**14, 1))})
    members = torch_members({"fc.weight": torch.zeros(1)})
    member(members, "/data.pkl").data = pkl
    data = member(members, "/data/0")
    stream, crc, size = deflated_zeros(b"", n * 4, b"")
    data.method, data.stored, data.crc, data.size = 8, stream, crc, size
    path.write_bytes(zip_bytes(members))


@probe(".pt", "exit 2 (one line: data.pkl is larger than any checkpoint's) or scanned in bounded memory")
def zip_bomb_pickle(path: Path) -> None:
    """A torch zip whose deflated ``archive/data.pkl`` is a 1 GiB pickle (a BINBYTES8 of 1 GiB
    of zeros, popped, then ``{}``): a scanner that inflates the member into memory, or lets
    ``pickletools`` read the 1 GiB argument, takes 1 GiB."""
    n = 2**30
    stream, crc, size = deflated_zeros(b"\x80\x04\x8e" + struct.pack("<Q", n), n, b"0}.")
    members = torch_members({"fc.weight": torch.zeros(2, 2)})
    pkl = member(members, "/data.pkl")
    pkl.method, pkl.stored, pkl.crc, pkl.size = 8, stream, crc, size
    path.write_bytes(zip_bytes(members))


def _safetensors(path: Path, header: bytes, data: bytes = b"") -> None:
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


@probe(".safetensors", "findings (TA301/TA302 key mismatch) in well under 10 s", "TA302")
def safetensors_80k_tensors(path: Path) -> None:
    """A safetensors file of 80,000 one-element float32 tensors (a ~5 MB header): per-tensor
    work must stay cheap (no per-key rescans, no per-key file opens)."""
    header = {f"layers.{i}.weight": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i in range(80_000)}
    _safetensors(path, json.dumps(header, separators=(",", ":")).encode(), bytes(4 * 80_000))


@probe(".safetensors", "exit 2 (one line: a malformed safetensors header)")
def safetensors_bad_offsets(path: Path) -> None:
    """A safetensors header whose ``data_offsets`` are not two integers (a float and a string):
    code that unpacks ``begin, end = data_offsets`` and subtracts gets a TypeError."""
    _safetensors(path, json.dumps({"fc.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0.5, "16"]}}).encode(),
                 bytes(16))


@probe(".safetensors", "exit 2 (one line: a malformed safetensors header), no RecursionError traceback")
def safetensors_deep_json(path: Path) -> None:
    """A safetensors header that is JSON nested 100,000 deep: Python's ``json.loads`` raises
    ``RecursionError`` (not ``JSONDecodeError``), serde_json stops at depth 128."""
    depth = 100_000
    _safetensors(path, b'{"fc.weight":' + b"[" * depth + b"]" * depth + b"}")


@probe(".pkl", "exit 2 (one line: truncated pickle), no MemoryError")
def raw_binbytes8_huge(path: Path) -> None:
    """A raw pickle whose first opcode, ``BINBYTES8``, claims 2**60 bytes: ``pickletools``
    asks the file for 2**60 bytes in one read (MemoryError), the unpickler says "truncated"."""
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2**60) + bytes(16))


def _torch_zip_with(path: Path, **change: object) -> None:
    members = torch_members({"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)})
    pkl = member(members, "/data.pkl")
    for key, value in change.items():
        setattr(pkl, key, value)
    path.write_bytes(zip_bytes(members))


@probe(".pt", "exit 2 (one line: data.pkl uses zip features torch cannot read)")
def zip_unsupported_flags(path: Path) -> None:
    """data.pkl with general-purpose flag bits 5 (compressed patched data) and 6 (strong
    encryption) set: miniz and ``zipfile`` both refuse it, each in its own words."""
    _torch_zip_with(path, flags=0x800 | 0x20 | 0x40)


@probe(".pt", "exit 2 (one line: unknown compression method)")
def zip_method_99(path: Path) -> None:
    """data.pkl with compression method 99 (AES in WinZip's extension), its bytes stored as
    is: ``zipfile`` raises ``NotImplementedError``, miniz "unsupported method"."""
    _torch_zip_with(path, method=99)


@probe(".pt", "exit 2 (one line: an encrypted member); torch itself refuses it")
def zip_encrypted_bit(path: Path) -> None:
    """data.pkl with the encrypted flag (bit 0) set, its bytes in clear: torch's miniz raises
    "unsupported encryption" (so a payload here would not run under torch.load), ``zipfile``
    asks for a password."""
    _torch_zip_with(path, flags=0x800 | 0x1)


@probe(".pt", "a verdict (exit 0/1) or exit 2 with one line; no UnicodeDecodeError traceback")
def zip_non_utf8_names(path: Path) -> None:
    """A torch zip with one more member whose name is not valid UTF-8 (``archive/\\xff\\xfe``)
    although its UTF-8 flag (0x800) is set: ``zipfile.ZipFile()`` raises
    ``UnicodeDecodeError`` while reading the central directory; miniz does not care."""
    members = torch_members({"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)})
    path.write_bytes(zip_bytes(members + [Member(b"archive/\xff\xfe", b"x")]))


@probe(".pt", "finding TA307 (NaN): the values are inflated, not read from the compressed bytes", "TA307")
def zip_deflated_nan_weight(path: Path) -> None:
    """A torch zip whose ``fc.weight`` (all NaN) is stored deflated: ``torch.load`` inflates
    it, but ``torch.load(mmap=True)`` maps the member's offset and returns the compressed
    bytes as floats, so a NaN check on the mapped tensor sees garbage and passes."""
    members = torch_members({"fc.weight": torch.full((2, 2), math.nan), "fc.bias": torch.zeros(2)})
    nan = torch.full((2, 2), math.nan).numpy().tobytes()
    [weight] = [m for m in members if b"/data/" in m.name and m.data == nan]
    weight.method = 8
    path.write_bytes(zip_bytes(members))


@probe(".pkl", "finding TA601 naming the global with its escapes printed as \\x1b, never raw", "TA601")
def ansi_global_name(path: Path) -> None:
    """A protocol 0 pickle whose GLOBAL name carries ANSI escapes (cursor up, erase line, a
    green "PASS"): printed raw, it repaints the terminal's verdict. Unpickled, it fails (no
    such attribute): nothing runs."""
    path.write_bytes(b"cos\nsystem\x1b[1A\x1b[2K\x1b[32mPASS\x1b[0m\n(S'true'\ntR.")


@probe(".pkl", "finding TA601 naming the global with \\udc80 escaped; no UnicodeEncodeError", "TA601")
def lone_surrogate_global(path: Path) -> None:
    """A STACK_GLOBAL whose name holds a lone surrogate (``sys\\udc80tem``, encoded with
    surrogatepass as BINUNICODE): writing it to a UTF-8 stream or report raises
    ``UnicodeEncodeError`` unless escaped."""
    name = "sys\udc80tem".encode("utf-8", "surrogatepass")
    path.write_bytes(proto4(s("os") + b"X" + struct.pack("<I", len(name)) + name + b"\x93" + s("true") + b"\x85R."))


@probe(".pt", "findings (TA301/TA302) with the 5 MB key cut when printed; reports stay small", "TA302")
def huge_dict_key(path: Path) -> None:
    """A torch zip state dict whose only key is 5,000,000 characters long: every report that
    prints the key must cut it."""
    torch.save({"k" * 5_000_000: torch.zeros(2)}, path)


@probe(".pt", "exit 2 (one line: the checkpoint claims more memory than can be allocated)")
def legacy_huge_storage(path: Path) -> None:
    """A legacy torch.save file whose only storage claims 2**40 float32 elements (4 TiB):
    ``torch.load(weights_only=True)`` allocates the storage before reading its bytes and
    raises "can't allocate memory"; everything it names is in the weights-only allowlist."""
    pid = ("storage", torch.FloatStorage, "0", "cpu", 2**40, None)
    state = {"fc.weight": _Rebuild(pid, (2**20, 2**20), (2**20, 1))}
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
    sys_info = pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
                            protocol=2)
    path.write_bytes(magic + sys_info + claiming_pickle(state) + pickle.dumps(["0"], protocol=2)
                     + struct.pack("<q", 4) + bytes(16))
