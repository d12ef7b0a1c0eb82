"""Legacy (non-zip) torch.save files and pre-0.4 tar files with the payload where a scanner
that reads only "the" pickle does not look.

``torch.serialization._legacy_load`` reads five pickles in a row (magic number, protocol
version, sys_info, the object, the storage keys), then raw storage bytes; every one of them is
``pickle_module.load(f)``, so a payload runs in any of them, and the magic and version checks
come after the load that ran it. Before that, ``legacy_load`` tries ``tarfile.open(f, 'r:')``:
a pre-0.4 tar with members ``storages``, ``tensors`` and ``pickle`` is unpickled member by
member. Sources: torch/serialization.py (2.13), arXiv 2508.19774 (payloads outside the main
pickle), picklescan's 2025 advisories (scanners that stop after the first pickle).
"""

from __future__ import annotations

import io
import pickle
import pickletools
import subprocess
import tarfile
from pathlib import Path

import torch

from tests.crafting import POP, Registry, returning

REGISTRY = Registry()
MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch/serialization.py
PROTOCOL_VERSION = 1001


class _Call:
    """Pickles as ``subprocess.call(['touch', canary])``."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple:
        return subprocess.call, (["touch", str(self.canary)],)


def legacy_pickles(obj: object, **save_args: object) -> tuple[list[bytes], bytes]:
    """``torch.save(obj, _use_new_zipfile_serialization=False)`` cut into its five pickles and
    the storage bytes after them."""
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False, **save_args)  # type: ignore[arg-type]
    data = buf.getvalue()
    f, pickles = io.BytesIO(data), []
    for _ in range(5):
        start = f.tell()
        for op, _arg, _pos in pickletools.genops(f):
            if op.name == "STOP":
                break
        pickles.append(data[start:f.tell()])
    return pickles, data[f.tell():]


def payload_then(canary: Path, value: object) -> bytes:
    """A protocol 2 pickle that calls ``subprocess.call`` then returns ``value``."""
    call = pickle.dumps(_Call(canary), protocol=2)[:-1]  # without STOP
    return returning(call, pickle.dumps(value, protocol=2)[2:-1])  # value without PROTO and STOP


STATE = {"fc.weight": torch.zeros(2, 2)}


def _write_with(path: Path, index: int, canary: Path) -> None:
    pickles, tail = legacy_pickles(STATE)
    value = pickle.loads(pickles[index]) if index != 2 else {"sys": "info"}
    pickles[index] = payload_then(canary, value)
    path.write_bytes(b"".join(pickles) + tail)


@REGISTRY.add("torch")
def legacy_payload_in_magic(path: Path, canary: Path) -> str:
    """The magic-number pickle runs ``subprocess.call`` and then returns the magic number: the
    check passes and the rest of the file loads as a clean state dict."""
    _write_with(path, 0, canary)
    return "subprocess.call"


@REGISTRY.add("torch")
def legacy_payload_in_protocol(path: Path, canary: Path) -> str:
    """The protocol-version pickle (second of five) carries the payload and returns 1001."""
    _write_with(path, 1, canary)
    return "subprocess.call"


@REGISTRY.add("torch")
def legacy_payload_in_sys_info(path: Path, canary: Path) -> str:
    """The sys_info pickle (third, read and ignored by torch) carries the payload."""
    _write_with(path, 2, canary)
    return "subprocess.call"


@REGISTRY.add("torch")
def legacy_payload_in_storage_keys(path: Path, canary: Path) -> str:
    """The storage-keys pickle, read after the object, carries the payload and returns the
    keys: the object pickle is clean, so a scanner that stops after it sees nothing."""
    _write_with(path, 4, canary)
    return "subprocess.call"


@REGISTRY.add("torch")
def legacy_double_proto(path: Path, canary: Path) -> str:
    """``PROTO 2`` twice at the start of the magic-number pickle (the unpickler accepts any
    number of PROTO opcodes); the payload is in the object pickle. A scanner that expects
    the magic number right after one PROTO loses its way."""
    pickles, tail = legacy_pickles({**STATE, "x": _Call(canary)})
    assert pickles[0][:2] == b"\x80\x02"
    path.write_bytes(b"\x80\x02" + b"".join(pickles) + tail)
    return "subprocess.call"


@REGISTRY.add("torch")
def legacy_protocol4(path: Path, canary: Path) -> str:
    """``torch.save(..., pickle_protocol=4, _use_new_zipfile_serialization=False)``: five
    framed protocol 4 pickles (STACK_GLOBAL, MEMOIZE), the payload in the object."""
    pickles, tail = legacy_pickles({**STATE, "x": _Call(canary)}, pickle_protocol=4)
    assert all(p[:2] == b"\x80\x04" for p in pickles)
    path.write_bytes(b"".join(pickles) + tail)
    return "subprocess.call"


@REGISTRY.add("torch")
def legacy_magic_through_memo(path: Path, canary: Path) -> str:
    """The magic number is pushed, memoized (BINPUT), popped and fetched back (BINGET) before
    STOP: the pickle's value is still the magic number, but a scanner that recognises a
    legacy file by "the last integer pushed" does not, and may not scan the later pickles."""
    pickles, tail = legacy_pickles({**STATE, "x": _Call(canary)})
    magic = pickle.dumps(MAGIC_NUMBER, protocol=2)[2:-1]  # LONG1
    pickles[0] = b"\x80\x02" + magic + b"q\x00" + POP + b"h\x00."
    path.write_bytes(b"".join(pickles) + tail)
    return "subprocess.call"


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _dump(*values: object) -> bytes:
    return b"".join(pickle.dumps(v, protocol=2) for v in values)


@REGISTRY.add("torch")
def tar_payload_in_pickle(path: Path, canary: Path) -> str:
    """A pre-0.4 torch.save tar (``storages``: 0 storages, no views; ``tensors``: 0 tensors)
    whose ``pickle`` member calls ``subprocess.call``: ``legacy_load`` tries tar first."""
    _tar(path, {"sys_info": _dump({}), "storages": _dump(0, []), "tensors": _dump(0),
                "pickle": pickle.dumps({"x": _Call(canary)}, protocol=2)})
    return "subprocess.call"


@REGISTRY.add("torch")
def tar_payload_in_storages(path: Path, canary: Path) -> str:
    """A pre-0.4 tar whose ``storages`` member starts with a pickle that runs the payload and
    returns 0 (the storage count); the ``pickle`` member is clean."""
    _tar(path, {"sys_info": _dump({}), "storages": payload_then(canary, 0) + _dump([]), "tensors": _dump(0),
                "pickle": _dump({})})
    return "subprocess.call"
