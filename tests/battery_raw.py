"""Raw pickles written opcode by opcode: the forms a scanner's parser may not expect.

Sources: picklescan's 2025 advisories (a parser that stops early, opcodes it does not track),
ReversingLabs' "nullifAI" (2025: a pickle broken after its payload, which ``pickle.load``
runs before it fails and which scanners reject as unreadable), fickling's and modelscan's
issue trackers (INST/OBJ, BINUNICODE8, memo indices above 255), arXiv 2508.19774.
"""

from __future__ import annotations

import struct
from pathlib import Path

from tests.crafting import MARK, MEMOIZE, STACK_GLOBAL, STOP, Registry, call, glob, proto4, s, touch

REGISTRY = Registry()


@REGISTRY.add("pickle")
def raw_long_protocol1_prefix(path: Path, canary: Path) -> str:
    """64 KiB of ``N0`` (NONE, POP) and ``(1`` (MARK, POP_MARK) before a protocol 0 payload:
    a scanner that reads only the head of the file, or caps the opcodes it reads, sees no
    global."""
    prefix = b"N0" * 16384 + b"(1" * 16384
    path.write_bytes(prefix + f"cos\nsystem\n(S'{touch(canary)}'\ntR.".encode())
    return "os.system"


@REGISTRY.add("pickle")
def raw_inst(path: Path, canary: Path) -> str:
    """Protocol 0 ``INST`` (``i``): ``(S'cmd'\\nios\\nsystem\\n`` calls ``os.system(cmd)``
    without GLOBAL or REDUCE."""
    path.write_bytes(f"(S'{touch(canary)}'\nios\nsystem\n.".encode())
    return "os.system"


@REGISTRY.add("pickle")
def raw_obj(path: Path, canary: Path) -> str:
    """Protocol 1 ``OBJ`` (``o``): MARK, the callable, its arguments, ``o`` calls it (the
    unpickler "instantiates" anything that is not a class)."""
    path.write_bytes(f"(cos\nsystem\nS'{touch(canary)}'\no.".encode())
    return "os.system"


def _binunicode8(text: str) -> bytes:
    data = text.encode()
    return b"\x8d" + struct.pack("<Q", len(data)) + data


@REGISTRY.add("pickle")
def raw_binunicode8_names(path: Path, canary: Path) -> str:
    """STACK_GLOBAL whose module and name are pushed with ``BINUNICODE8`` (8-byte length),
    which a scanner tracking only SHORT_BINUNICODE/BINUNICODE leaves unresolved or skips."""
    body = _binunicode8("posix") + _binunicode8("system") + STACK_GLOBAL + MARK + s(touch(canary)) + b"tR."
    path.write_bytes(proto4(body))
    return "posix.system"


@REGISTRY.add("pickle")
def raw_long_binget_operands(path: Path, canary: Path) -> str:
    """STACK_GLOBAL operands stored at memo indices 300 and 301 (``LONG_BINPUT``), popped,
    and fetched back with ``LONG_BINGET``: a scanner that tracks BINGET only, or keeps a
    256-entry memo, cannot resolve the global."""
    put = lambda i: b"r" + struct.pack("<I", i)  # noqa: E731  LONG_BINPUT
    get = lambda i: b"j" + struct.pack("<I", i)  # noqa: E731  LONG_BINGET
    body = (s("posix") + put(300) + b"0" + s("system") + put(301) + b"0"
            + get(300) + get(301) + STACK_GLOBAL + MARK + s(touch(canary)) + b"tR.")
    path.write_bytes(proto4(body))
    return "posix.system"


@REGISTRY.add("pickle")
def raw_nullifai_invalid_opcode(path: Path, canary: Path) -> str:
    """nullifAI: ``os.system(cmd)`` then the byte 0xff, no such opcode: ``pickle.load`` runs
    the payload, then raises ``UnpicklingError``. A scanner must not call the file "not a
    pickle" and move on."""
    path.write_bytes(proto4(call(glob("posix", "system"), s(touch(canary))) + MEMOIZE + b"\xff" + STOP))
    return "posix.system"


@REGISTRY.add("pickle")
def raw_nullifai_truncated(path: Path, canary: Path) -> str:
    """nullifAI, the other way: the payload, then the file simply ends (no STOP): the
    unpickler has run ``os.system`` when it hits end of file."""
    path.write_bytes(f"cos\nsystem\n(S'{touch(canary)}'\ntR(lp0\n".encode())
    return "os.system"
