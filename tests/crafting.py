"""Byte-level tools for the malicious builders and the robustness probes: pickle opcodes, a zip
writer that can write what Python's ``zipfile`` refuses to (duplicate names, a local name that
differs from the central one, a wrong CRC, any flag bit or method), and the builders' registry.

Nothing here runs a payload; the builders in ``tests/battery_*.py`` use these to write files.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

Builder = Callable[[Path, Path], str]


class Registry:
    """Builders by name, each with the loader that proves it runs (``"pickle"``: a plain
    ``pickle.load(open(f, 'rb'))``; ``"torch"``: ``torch.load(f, weights_only=False)``)."""

    def __init__(self) -> None:
        self.builders: dict[str, Builder] = {}
        self.loaders: dict[str, str] = {}

    def add(self, loader: str) -> Callable[[Builder], Builder]:
        assert loader in ("pickle", "torch"), loader

        def register(fn: Builder) -> Builder:
            assert fn.__name__ not in self.builders, f"duplicate builder {fn.__name__}"
            assert fn.__doc__, f"{fn.__name__} says nothing about what it attacks"
            self.builders[fn.__name__] = fn
            self.loaders[fn.__name__] = loader
            return fn

        return register


# --- pickle opcodes ---------------------------------------------------------------------------

PROTO4 = b"\x80\x04"
MEMOIZE, STACK_GLOBAL, REDUCE, TUPLE1, TUPLE2, STOP, POP, MARK = b"\x94", b"\x93", b"R", b"\x85", b"\x86", b".", b"0", b"("
EMPTY_DICT, BUILD, NONE, TUPLE = b"}", b"b", b"N", b"t"


def s(text: str) -> bytes:
    """SHORT_BINUNICODE (< 256 bytes) or BINUNICODE: push one string."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) < 256:
        return b"\x8c" + bytes([len(data)]) + data
    return b"X" + struct.pack("<I", len(data)) + data


def glob(module: str, name: str) -> bytes:
    """``module.name`` through STACK_GLOBAL (protocol 4): the form whose name may hold dots."""
    return s(module) + s(name) + STACK_GLOBAL


def call(fn: bytes, *args: bytes) -> bytes:
    """``fn(*args)``: a callable's opcodes, then the arguments as a tuple, then REDUCE."""
    return fn + MARK + b"".join(args) + TUPLE + REDUCE


def binint(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def proto4(body: bytes) -> bytes:
    """A whole protocol 4 pickle around ``body`` (which must end with STOP), in one FRAME."""
    return PROTO4 + b"\x95" + struct.pack("<Q", len(body)) + body


def returning(payload: bytes, value: bytes) -> bytes:
    """Opcodes that run ``payload`` (which pushes one value), drop its result, then return
    ``value``: the pickle's result is what the reader expected, the side effect happened."""
    return payload + POP + value + STOP


def touch(canary: Path) -> str:
    """The shell payload: only ever creates the canary."""
    return f"touch {canary}"


def write_canary(canary: Path) -> str:
    """The Python payload: only ever writes the canary."""
    return f"open({str(canary)!r}, 'w').write('pwned')"


# --- zip archives, byte by byte ---------------------------------------------------------------


@dataclass
class Member:
    """One zip member. ``data`` is the content before compression; ``method`` 8 deflates it,
    any other method stores it as is (and says ``method`` in both headers). ``crc`` and
    ``local_name`` default to the honest values; set them to lie."""

    name: bytes
    data: bytes
    method: int = 0
    flags: int = 0x800  # names are UTF-8, as torch.save writes them
    crc: int | None = None
    local_name: bytes | None = None
    stored: bytes | None = None  # the bytes written, when not ``data`` (pre-compressed)
    size: int | None = None  # the uncompressed size, when not ``len(data)`` (with ``stored``)


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def zip_bytes(members: list[Member], *, central_order: list[int] | None = None, prefix: bytes = b"", shift: int = 0,
              gap: bytes = b"") -> bytes:
    """A zip whose central directory lists ``members`` (in ``central_order`` if given).
    ``prefix``: bytes before the archive, with every offset moved by ``shift`` (``-len(prefix)``:
    written as if the prefix were absent, what ``zipfile`` corrects and miniz does not);
    ``gap``: bytes between the central directory and its end record."""
    out, central, offsets = io.BytesIO(), [], []
    out.write(prefix)
    for m in members:
        body = m.stored if m.stored is not None else (deflate(m.data) if m.method == 8 else m.data)
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        local = m.name if m.local_name is None else m.local_name
        size = len(m.data) if m.size is None else m.size
        offsets.append(out.tell() + shift)
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, m.flags, m.method, 0, 0x21, crc, len(body), size,
                              len(local), 0) + local + body)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, m.flags, m.method, 0, 0x21, crc, len(body),
                                   size, len(m.name), 0, 0, 0, 0, 0, offsets[-1]) + m.name)
    start = out.tell()
    for i in central_order if central_order is not None else range(len(members)):
        out.write(central[i])
    size = out.tell() - start
    out.write(gap)
    n = len(central_order) if central_order is not None else len(members)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, size, start + shift, 0))
    return out.getvalue()


def torch_members(obj: object, prefix: str = "archive") -> list[Member]:
    """The members of ``torch.save(obj)``'s zip, renamed under ``prefix``, data.pkl first."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        members = [Member(f"{prefix}/{i.filename.split('/', 1)[1]}".encode(), z.read(i)) for i in z.infolist()]
    return sorted(members, key=lambda m: not m.name.endswith(b"/data.pkl"))


def member(members: list[Member], suffix: str) -> Member:
    [found] = [m for m in members if m.name.endswith(suffix.encode())]
    return found
