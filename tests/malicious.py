"""Real malicious checkpoints for the security tests: each, when unpickled, creates ``canary``.

Every builder writes a file that genuinely runs its payload under ``pickle.load`` /
``torch.load(weights_only=False)`` (``LOADERS`` says which proves it);
``test_payloads_are_real`` proves it in a subprocess with a separate canary, so a scan that
leaves the canary absent is evidence, not luck. A builder returns the global a scanner must
report as dangerous.

The first nine live here; the battery of scanner bypasses from public research lives in
``tests/battery_zip.py`` (zip differentials), ``tests/battery_legacy.py`` (legacy torch.save
and pre-0.4 tar files), ``tests/battery_raw.py`` (raw pickles) and ``tests/battery_gadgets.py``
(execution gadgets). Hostile files that do not execute are in ``tests/probes.py``.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
from pathlib import Path
from typing import Callable

import torch

from tests import battery_gadgets, battery_legacy, battery_raw, battery_zip


class _Reduce:
    def __init__(self, fn: object, args: tuple) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple:
        return self.fn, self.args


def zip_os_system(path: Path, canary: Path) -> str:
    """A torch.save zip checkpoint whose pickle calls os.system."""
    torch.save({"fc.weight": torch.zeros(2, 2), "x": _Reduce(os.system, (f"touch {canary}",))}, path)
    return f"{os.system.__module__}.system"  # posix.system on Linux


def raw_exec(path: Path, canary: Path) -> str:
    """A raw pickle (protocol 4: STACK_GLOBAL with memoized strings) calling builtins.exec."""
    path.write_bytes(pickle.dumps(_Reduce(exec, (f"open({str(canary)!r}, 'w').write('pwned')",)), protocol=4))
    return "builtins.exec"


def legacy_subprocess(path: Path, canary: Path) -> str:
    """A legacy (non-zip) torch.save file whose pickle calls subprocess.call."""
    payload = _Reduce(subprocess.call, (["touch", str(canary)],))
    torch.save({"fc.weight": torch.zeros(2, 2), "x": payload}, path, _use_new_zipfile_serialization=False)
    return "subprocess.call"


def _op_str(s: str) -> bytes:
    data = s.encode()
    return b"\x8c" + bytes([len(data)]) + data  # SHORT_BINUNICODE


def importlib_indirection(path: Path, canary: Path) -> str:
    """Hand-built protocol 4 pickle: ``getattr(importlib.import_module('os'), 'system')(cmd)``,
    where the module name 'importlib' is pushed early, memoized, popped, and fetched back with
    BINGET right before STACK_GLOBAL (a scanner without memo tracking misses it)."""
    memo = b"\x94"  # MEMOIZE
    body = (
        _op_str("importlib") + memo + b"0"  # push, memo[0], POP
        + _op_str("builtins") + memo + _op_str("getattr") + memo + b"\x93"  # STACK_GLOBAL builtins.getattr
        + b"h\x00" + _op_str("import_module") + memo + b"\x93"  # BINGET 0 -> importlib.import_module
        + _op_str("os") + b"\x85" + b"R"  # ('os',) REDUCE -> os module
        + _op_str("system") + b"\x86" + b"R"  # (os, 'system') getattr -> os.system
        + _op_str(f"touch {canary}") + b"\x85" + b"R"  # os.system(cmd)
        + b"."
    )
    path.write_bytes(b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body)
    return "importlib.import_module"


def runpy_run_code(path: Path, canary: Path) -> str:
    """A raw pickle (protocol 2: GLOBAL) calling runpy._run_code, which execs a string."""
    import runpy

    code = f"open({str(canary)!r}, 'w').write('pwned')"
    path.write_bytes(pickle.dumps(_Reduce(runpy._run_code, (code, {})), protocol=2))
    return "runpy._run_code"


def protocol0_os_system(path: Path, canary: Path) -> str:
    """A hand-written protocol 0 pickle (text opcodes, no PROTO header) calling os.system."""
    path.write_bytes(f"cos\nsystem\n(S'touch {canary}'\ntR.".encode())
    return "os.system"


def protocol0_none_pop(path: Path, canary: Path) -> str:
    """Protocol 0 led by ``N0`` (NONE, POP): plain text opcodes that are still one pickle, once
    called "a text file" and waved off."""
    path.write_bytes(f"N0cos\nsystem\n(S'touch {canary}'\ntR.".encode())
    return "os.system"


def frame_without_proto(path: Path, canary: Path) -> str:
    """Protocol 4 opcodes in a FRAME with no PROTO before it: the unpickler takes it."""
    body = pickle.dumps(_Reduce(os.system, (f"touch {canary}",)), protocol=4)
    assert body[:2] == b"\x80\x04" and body[2:3] == b"\x95"  # PROTO 4, then FRAME
    path.write_bytes(body[2:])
    return f"{os.system.__module__}.system"


def legacy_none_pop_magic(path: Path, canary: Path) -> str:
    """A legacy torch.save file whose magic-number pickle starts with NONE, POP: torch's
    ``_legacy_load`` reads the magic number as the value of that first pickle and goes on to the
    payload in the fourth."""
    payload = _Reduce(subprocess.call, (["touch", str(canary)],))
    tmp = path.with_suffix(".plain")
    torch.save({"fc.weight": torch.zeros(2, 2), "x": payload}, tmp, _use_new_zipfile_serialization=False)
    path.write_bytes(b"N0" + tmp.read_bytes())
    tmp.unlink()
    return "subprocess.call"


_OWN = {
    "protocol0_none_pop": "pickle",
    "frame_without_proto": "torch",
    "legacy_none_pop_magic": "torch",
    "protocol0_os_system": "pickle",
    "zip_os_system": "torch",
    "raw_exec": "pickle",
    "legacy_subprocess": "torch",
    "importlib_indirection": "pickle",
    "runpy_run_code": "pickle",
}

BUILDERS: dict[str, Callable[[Path, Path], str]] = {name: globals()[name] for name in _OWN}
LOADERS: dict[str, str] = dict(_OWN)  # "pickle": pickle.load proves it; "torch": torch.load(weights_only=False)
for _battery in (battery_zip, battery_legacy, battery_raw, battery_gadgets):
    assert not set(_battery.REGISTRY.builders) & set(BUILDERS), "a builder name is taken twice"
    BUILDERS.update(_battery.REGISTRY.builders)
    LOADERS.update(_battery.REGISTRY.loaders)
