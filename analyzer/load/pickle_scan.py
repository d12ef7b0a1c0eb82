"""Read a pickle's opcodes to list the globals it would import, without unpickling it.

Unpickling runs whatever callables the stream names (``os.system`` through ``REDUCE``), so
the only safe way to look inside an untrusted pickle is to read its opcodes, as picklescan
and fickling do. ``GLOBAL`` and ``INST`` carry ``module name`` inline; ``STACK_GLOBAL``
takes the two strings pushed before it, possibly fetched back from the memo, so string pushes
and memo writes are tracked. A ``STACK_GLOBAL`` whose operands are not plain strings, and the
``EXT1/2/4`` extension-registry opcodes, cannot be resolved and are reported as dangerous.

What counts as safe is PyTorch's own weights-only allowlist
(``torch._weights_only_unpickler._get_allowed_globals``), plus what the user allowlisted with
``torch.serialization.add_safe_globals``.
"""

from __future__ import annotations

import pickletools
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Iterator, cast

if TYPE_CHECKING:
    import torch.nn as nn

UNRESOLVED = "<unresolved STACK_GLOBAL>"
EXTENSION = "<copyreg extension>"

# module (or module prefix) -> why importing from it is dangerous
DANGEROUS_MODULES = {
    "os": "runs commands and touches files",
    "posix": "runs commands and touches files",
    "nt": "runs commands and touches files",
    "subprocess": "runs commands",
    "pty": "runs commands",
    "commands": "runs commands",
    "runpy": "runs arbitrary modules",
    "importlib": "imports arbitrary modules",
    "socket": "opens network connections",
    "http": "opens network connections",
    "urllib": "opens network connections",
    "requests": "opens network connections",
    "webbrowser": "opens URLs",
    "pickle": "unpickles nested payloads",
    "_pickle": "unpickles nested payloads",
    "marshal": "loads code objects",
    "shutil": "copies and deletes files",
    "sys": "changes the interpreter",
    "ctypes": "calls native code",
    "code": "runs Python source",
    "codeop": "compiles Python source",
    "types": "builds code and functions",
    "multiprocessing": "starts processes",
    "asyncio": "starts processes and connections",
    "tempfile": "touches files",
    "pathlib": "touches files",
    "io": "opens files",
    "operator": "fetches attributes (attrgetter/methodcaller reach anything)",
    "functools": "wraps callables (partial reaches anything)",
    "inspect": "reaches frames and code",
    "torch.hub": "downloads and runs code",
    "numpy.load": "unpickles nested payloads",
}
DANGEROUS_NAMES = {
    "builtins.eval": "evaluates Python source",
    "builtins.exec": "runs Python source",
    "builtins.compile": "compiles Python source",
    "builtins.getattr": "fetches any attribute (reaches os.system)",
    "builtins.setattr": "changes any attribute",
    "builtins.delattr": "deletes any attribute",
    "builtins.__import__": "imports arbitrary modules",
    "builtins.open": "opens files",
    "builtins.breakpoint": "starts a debugger",
    "builtins.input": "reads stdin",
    "builtins.globals": "reaches the interpreter's globals",
    "builtins.vars": "reaches any namespace",
    "builtins.apply": "calls anything",
    "builtins.execfile": "runs a file",
    "torch.load": "unpickles nested payloads",
    "torch.storage._load_from_bytes": "unpickles nested payloads with weights_only=False",
    "torch.serialization.load": "unpickles nested payloads",
    "torch._C": "calls native code",
    UNRESOLVED: "the imported name is computed at load time and cannot be checked",
    EXTENSION: "imports through the copyreg extension registry, which cannot be checked",
}


@dataclass(frozen=True)
class PickleGlobal:
    """A global a pickle would import, and whether it is dangerous (with why)."""

    name: str  # "module.qualname"
    dangerous: bool
    why: str = ""


def danger(name: str) -> str:
    """Why importing ``name`` from a pickle is dangerous, or ``""``."""
    if name in DANGEROUS_NAMES:
        return DANGEROUS_NAMES[name]
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in DANGEROUS_MODULES:
            return DANGEROUS_MODULES[prefix]
        if prefix in DANGEROUS_NAMES:
            return DANGEROUS_NAMES[prefix]
    return ""


def allowed_globals() -> set[str]:
    """PyTorch's weights-only allowlist, plus the user's ``add_safe_globals``."""
    from torch import _weights_only_unpickler as wou

    return set(wou._get_allowed_globals()) | set(wou._get_user_allowed_globals())


def _normalize(module: str, name: str) -> str:
    """Python 2 names mapped as ``pickle.Unpickler(fix_imports=True)`` maps them
    (``__builtin__`` -> ``builtins``, ``commands`` -> ``subprocess``)."""
    from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING

    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    elif module in IMPORT_MAPPING:
        module = IMPORT_MAPPING[module]
    return f"{module}.{name}"


_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}
_NO_PUSH = {"PROTO", "FRAME", "MEMOIZE", "STOP", "MARK"} | _PUTS


_INTS = {"INT", "LONG", "BININT", "BININT1", "BININT2", "LONG1", "LONG4"}
_NEUTRAL = {"PROTO", "FRAME", "MEMOIZE", "POP", "STOP"} | _PUTS  # leave the value a pickle returns as it is


def scan_stream(data: IO[bytes]) -> tuple[set[str], object]:
    """Globals of ONE pickle read from ``data`` (left just after its STOP), and the integer
    that pickle returns when it returns a plain integer pushed last (the legacy
    ``torch.save`` magic number, however many ``NONE POP`` or ``PROTO`` come before it: torch's
    ``_legacy_load`` reads it as ``pickle_module.load(f)``'s value).

    Raises ``ValueError`` when the bytes are not a well-formed pickle (truncated, or not one).
    """
    found: set[str] = set()
    pushed: list[object] = []  # value of each push, None when not a string
    memo: dict[int, object] = {}
    first_int: object = None
    for op, arg, _pos in _genops(data):
        name = op.name
        if name in _INTS:
            first_int = arg
        elif name not in _NEUTRAL:
            first_int = None
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            found.add(_normalize(module, attr))
            pushed.append(None)
        elif name == "STACK_GLOBAL":
            a, b = (pushed[-2], pushed[-1]) if len(pushed) >= 2 else (None, None)
            found.add(_normalize(a, b) if isinstance(a, str) and isinstance(b, str) else UNRESOLVED)
            pushed.append(None)
        elif name in ("EXT1", "EXT2", "EXT4"):
            found.add(EXTENSION)
            pushed.append(None)
        elif name in _STRINGS:
            pushed.append(arg if isinstance(arg, str) else (arg.decode("latin-1") if isinstance(arg, bytes) else None))
        elif name in _PUTS:
            memo[cast(int, arg)] = pushed[-1] if pushed else None  # genops reads *PUT/*GET arguments as int
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in _GETS:
            pushed.append(memo.get(cast(int, arg)))
        elif name not in _NO_PUSH:
            pushed.append(None)
        if name == "STOP":
            return found, first_int
    raise ValueError("the pickle ends before its STOP opcode")


def _genops(data: IO[bytes]) -> Iterator[tuple[pickletools.OpcodeInfo, object, int | None]]:
    try:
        for op, arg, pos in pickletools.genops(data):
            yield op, arg, pos
            if op.name == "STOP":
                return
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError) as exc:
        raise ValueError(f"not a well-formed pickle: {exc}") from None


def classify(names: set[str], allowed: set[str] | None = None) -> list[PickleGlobal]:
    """The globals outside the allowlist, dangerous ones marked, sorted (dangerous first)."""
    allowed = allowed_globals() if allowed is None else allowed
    out = []
    for name in names:
        if name in allowed:
            continue
        why = danger(name)
        out.append(PickleGlobal(name, bool(why), why))
    return sorted(out, key=lambda g: (not g.dangerous, g.name))


def is_module_class(name: str, model: nn.Module | None = None) -> bool:
    """An ``nn.Module`` class: resolved from already-imported modules only (never imports),
    or named like a class the model is made of."""
    import sys

    import torch.nn as nn

    if model is not None and name.rsplit(".", 1)[-1] in {type(m).__name__ for m in model.modules()}:
        return True
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        mod = sys.modules.get(".".join(parts[:i]))
        if mod is None:
            continue
        obj: object = mod
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
        return isinstance(obj, type) and issubclass(obj, nn.Module)
    return False
