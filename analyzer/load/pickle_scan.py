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

import functools
import io
import pickletools
import struct
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Callable, cast

from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING

if TYPE_CHECKING:
    import torch.nn as nn

UNRESOLVED = "<unresolved STACK_GLOBAL>"
EXTENSION = "<copyreg extension>"
TOO_MANY = "<more globals than torchaudit lists>"
MAX_GLOBALS = 1000  # distinct globals listed per pickle; a checkpoint needs a few dozen

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
    # execution gadgets from public scanner bypasses (picklescan/modelscan advisories, JFrog 2025)
    "_operator": "fetches attributes (attrgetter/methodcaller reach anything)",
    "_functools": "wraps callables (partial reaches anything)",
    "_io": "opens files",
    "_posixsubprocess": "runs commands",
    "_thread": "starts threads",
    "threading": "starts threads",
    "pkgutil": "resolves and imports any name (resolve_name)",
    "timeit": "runs Python source (timeit, repeat)",
    "cProfile": "runs Python source (run, runctx)",
    "profile": "runs Python source (run, runctx)",
    "pdb": "runs Python source (run, runeval)",
    "bdb": "runs Python source (Bdb.run)",
    "trace": "runs Python source (Trace.run)",
    "doctest": "runs Python source",
    "pydoc": "runs shell commands (pipepager, tempfilepager)",
    "idlelib": "runs Python source",
    "ensurepip": "runs pip",
    "venv": "creates environments and runs commands",
    "distutils": "runs commands and writes files",
    "setuptools": "runs commands and writes files",
    "pip": "installs and runs packages",
    "imp": "imports arbitrary modules",
    "zipimport": "imports arbitrary modules",
    "_osx_support": "runs commands",
    "torch.utils.collect_env": "runs shell commands (run, run_and_read_all)",
    "torch.utils.cpp_extension": "compiles and loads native code",
    "torch.jit.unsupported_tensor_ops": "runs Python source (execWrapper)",
    "torch.fx.experimental.rewriter": "runs Python source",
    "torch.package": "imports code from an archive",
    "torch._inductor": "compiles and runs generated code",
    "torch._dynamo": "compiles and runs generated code",
    "torch.testing._internal": "test helpers that run code",
    "numpy.testing": "test helpers that run code (runstring is exec)",
    "numpy.f2py": "compiles and runs code",
    "numpy.distutils": "runs commands",
}
# modules whose name, met inside a dotted attribute path (``posixpath`` + ``os.system``,
# ``torch.serialization`` + ``os.system``), means the global reaches them through an alias
_ALIASED = {"os", "posix", "nt", "subprocess", "sys", "builtins", "importlib", "shutil", "socket", "pickle",
            "_pickle", "runpy", "ctypes", "pty", "marshal", "code", "codeop", "pkgutil", "_posixsubprocess"}
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
    "torch.fx.graph_module.reduce_graph_module": "runs Python source (the import block it is given)",
    "torch.fx.graph_module.reduce_package_graph_module": "runs Python source",
    "torch.fx.graph_module.reduce_deploy_graph_module": "runs Python source",
    "torch.fx.graph_module._forward_from_src": "runs Python source",
    "torch.fx.graph_module._exec_with_source": "runs Python source",
    "torch.export._unlift": "runs Python source",
    "builtins.dict.get": "fetches from any mapping (with globals() or a module __dict__, reaches anything)",
    UNRESOLVED: "the imported name is computed at load time and cannot be checked",
    EXTENSION: "imports through the copyreg extension registry, which cannot be checked",
    TOO_MANY: f"the pickle imports more than {MAX_GLOBALS} distinct globals; the rest are not listed",
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
    for i in range(1, len(parts) - 1):  # an attribute path through a module alias
        if parts[i] in _ALIASED:
            inner = danger(".".join(parts[i:]))
            if inner:
                return f"reaches {'.'.join(parts[i:])} through {'.'.join(parts[:i])}: {inner}"
    return ""


def allowed_globals() -> set[str]:
    """PyTorch's weights-only allowlist, plus the user's ``add_safe_globals``."""
    from torch import _weights_only_unpickler as wou

    return set(wou._get_allowed_globals()) | set(wou._get_user_allowed_globals())


@functools.lru_cache(maxsize=4096)
def _normalize(module: str, name: str) -> str:
    """Python 2 names mapped as ``pickle.Unpickler(fix_imports=True)`` maps them
    (``__builtin__`` -> ``builtins``, ``commands`` -> ``subprocess``)."""
    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    elif module in IMPORT_MAPPING:
        module = IMPORT_MAPPING[module]
    return f"{module}.{name}"


_KEEP_STRING = 1 << 16  # longer strings are skipped, never held: no module or global name is that long
_MAX_LINE = 16 << 20  # a text argument (protocol 0) longer than this ends the scan as broken
MAX_OPCODES = 5_000_000  # past this many opcodes a pickle is not read to its end (PickleScan.broken says so)


class _Global:
    """The value a global-importing opcode pushes (never resolved)."""


@dataclass
class PickleScan:
    """What the opcodes of ONE pickle say, read without running it.

    ``globals``: every global it would import (``module.qualname``), including those read
    before a break. ``value``: what the pickle returns when that is a plain integer (the legacy
    ``torch.save`` magic number, however it was pushed: after ``NONE POP``, through the memo),
    else ``None``. ``broken``: ``None`` for a well-formed pickle, else where and why the
    opcodes stop before a ``STOP``; ``pickle.load`` has run every opcode before that point
    when it raises (the "nullifAI" trick), so the globals found up to there still count.
    """

    globals: set[str] = field(default_factory=set)
    value: object = None
    broken: str | None = None
    opcodes: int = 0

    def add(self, name: str) -> None:
        if len(self.globals) < MAX_GLOBALS or name in self.globals:
            self.globals.add(name)
        else:
            self.globals.add(TOO_MANY)


class _Broken(Exception):
    pass


class _Reader:
    """Bounded, buffered reads from a stream of known length: a length field can claim 2**60
    bytes, this never allocates more than what is left, nor more than a chunk at a time."""

    CHUNK = 1 << 20

    def __init__(self, data: IO[bytes], left: int) -> None:
        self._data, self._left = data, left  # _left: bytes not yet pulled into the buffer
        self.buf, self.i, self.done = b"", 0, 0  # done: bytes consumed before buf

    @property
    def pos(self) -> int:
        return self.done + self.i

    def fill(self) -> bool:
        """Keep the unread rest of the buffer and append the next chunk; False at the end."""
        if not self._left:
            return False
        chunk = self._data.read(min(self.CHUNK, self._left))
        if not chunk:
            self._left = 0
            return False
        self._left -= len(chunk)
        self.done += self.i
        self.buf, self.i = self.buf[self.i :] + chunk, 0
        return True

    def _claim(self, n: int) -> None:
        if n > len(self.buf) - self.i + self._left:
            raise _Broken(f"an argument claims {n} bytes, only {len(self.buf) - self.i + self._left} are left")

    def read(self, n: int) -> bytes:
        """``n`` bytes; callers read at most ``_KEEP_STRING`` this way and skip longer ones."""
        self._claim(n)
        while len(self.buf) - self.i < n:
            if not self.fill():
                raise _Broken("the data ends inside an argument")
        out = self.buf[self.i : self.i + n]
        self.i += n
        return out

    def skip(self, n: int) -> None:
        self._claim(n)
        while n:
            take = min(n, len(self.buf) - self.i)
            self.i += take
            n -= take
            if n and not self.fill():
                raise _Broken("the data ends inside an argument")

    def line(self) -> bytes:
        """The next line without its newline."""
        while (end := self.buf.find(b"\n", self.i)) < 0:
            if len(self.buf) - self.i > _MAX_LINE:
                raise _Broken("a text argument is too long")
            if not self.fill():
                raise _Broken("a text argument has no end of line")
        out = self.buf[self.i : end]
        self.i = end + 1
        return out


def _decimal(line: bytes) -> object:
    """INT, LONG, GET, PUT: decimal text (``00``/``01`` are False/True in INT)."""
    if line in (b"00", b"01"):
        return line == b"01"
    return int(line.rstrip(b"L"))


def _text(op: str, reader: _Reader) -> object:
    """The argument of a protocol-0 text opcode, decoded as ``pickle``'s loader would."""
    if op in ("GLOBAL", "INST"):
        module, name = reader.line(), reader.line()
        return module.decode("utf-8"), name.decode("utf-8")
    line = reader.line()
    if op in ("INT", "LONG", "GET", "PUT"):
        return _decimal(line)
    if op == "STRING":
        return pickletools.read_stringnl(io.BytesIO(line + b"\n"))
    if op == "UNICODE":
        return line.decode("raw-unicode-escape")
    return None  # FLOAT, PERSID: nothing a global depends on


_FIXED = {1: "<B", 2: "<H", 4: "<i", 8: "<Q"}  # fixed-size arguments: PROTO, BININT*, *PUT, *GET, EXT*, FRAME
_LENGTH = {pickletools.TAKEN_FROM_ARGUMENT1: ("<B", 1), pickletools.TAKEN_FROM_ARGUMENT4: ("<i", 4),
           pickletools.TAKEN_FROM_ARGUMENT4U: ("<I", 4), pickletools.TAKEN_FROM_ARGUMENT8U: ("<Q", 8)}
_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
_INTS = {"INT", "LONG", "BININT", "BININT1", "BININT2", "LONG1", "LONG4"}


def _argument(op: pickletools.OpcodeInfo, reader: _Reader) -> object:
    spec = op.arg
    if spec is None:
        return None
    if spec.n == pickletools.UP_TO_NEWLINE:
        return _text(op.name, reader)
    if spec.n >= 0:
        raw = reader.read(spec.n)
        if spec.n == 8 and op.name == "BINFLOAT":
            return None
        fmt = "<I" if op.name in ("LONG_BINPUT", "LONG_BINGET") else _FIXED[spec.n]
        return struct.unpack(fmt, raw)[0]
    raise AssertionError(f"{op.name} is read by _pushed_argument")


def _pushed_argument(code: int, spec: tuple[str, int], reader: _Reader) -> object:
    """The value a length-prefixed push (strings, bytes, LONG1/4) puts on the stack: kept
    only for strings and ints (``_DECODE``) short enough to name a global or be a magic number."""
    fmt, width = spec
    (n,) = struct.unpack(fmt, reader.read(width))
    if n < 0:
        raise _Broken(f"opcode {chr(code)!r} has a negative length")
    if n > _KEEP_STRING or code not in _DECODE:
        reader.skip(n)
        return None
    return _DECODE[code](reader.read(n))


def _long(raw: bytes) -> int:
    return int.from_bytes(raw, "little", signed=True)


def _str(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


def _binstring(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")  # torch.load unpickles with encoding="utf-8"


_DECODE: dict[int, Callable[[bytes], object]] = {  # what a kept length-prefixed push decodes to
    **{ord(c): _long for c in ("\x8a", "\x8b")},  # LONG1, LONG4
    **{ord(c): _binstring for c in "TU"},  # BINSTRING, SHORT_BINSTRING
    **{ord(c): _str for c in ("X", "\x8c", "\x8d")},  # BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
}


# The stack is simulated from each opcode's own description in pickletools (stack_before,
# stack_after), as pickletools.dis does. A MARK is kept as a position in `marks`, as
# pickle.py keeps its metastack, so reaching back to it costs nothing.
_MARK = pickletools.markobject
_SIMPLE: dict[int, tuple[int, bool]] = {}  # no argument, no MARK: (pops, pushes)
_TO_MARK: dict[int, tuple[int, bool]] = {}  # no argument, pops to a MARK: (items below the MARK, pushes)
_PUSH_ARG: dict[int, tuple[str, int]] = {}  # pushes a length-prefixed argument: (length format, width)
_GENERAL: dict[int, pickletools.OpcodeInfo] = {}  # everything else
for _op in pickletools.opcodes:
    _code = ord(_op.code)
    if _op.arg is not None and _op.arg.n in _LENGTH and not _op.stack_before:
        _PUSH_ARG[_code] = _LENGTH[_op.arg.n]
    elif _op.name in ("POP", "DUP", "MARK", "MEMOIZE", "STACK_GLOBAL", "STOP") or _op.arg is not None:
        _GENERAL[_code] = _op
    elif _MARK in _op.stack_before:
        _TO_MARK[_code] = (_op.stack_before.index(_MARK), bool(_op.stack_after))
    else:
        _SIMPLE[_code] = (len(_op.stack_before), bool(_op.stack_after))
_POP, _MARK_CODE, _BINPUT, _BINGET, _BININT1, _FLOAT, _GLOBAL = (ord(c) for c in "0(qhKFc")
_FIXED_ARG = {  # fixed-size arguments the hot loop reads itself: (width, what to do with it)
    ord("J"): (4, "int4"), ord("M"): (2, "push"), ord("G"): (8, "float"),
    ord("r"): (4, "put"), ord("j"): (4, "get"), 0x80: (1, "skip"), 0x95: (8, "skip"),  # PROTO, FRAME
}
_TEXT_PUSH = {ord("I"), ord("L"), _FLOAT}


def scan_pickle(data: IO[bytes], size: int) -> PickleScan:
    """Read ONE pickle from ``data`` (at most ``size`` bytes), leaving a seekable ``data``
    just after its STOP. ``STACK_GLOBAL`` takes exactly the two strings below it, however
    they got there (pushed, popped around, fetched from the memo)."""
    base = data.tell() if data.seekable() else None
    reader = _Reader(data, size)
    out = PickleScan()
    stack: list[object] = []
    marks: list[int] = []
    memo: dict[int, object] = {}
    simple, to_mark, push_arg, general = _SIMPLE, _TO_MARK, _PUSH_ARG, _GENERAL
    count = 0
    buf, i, end = reader.buf, reader.i, len(reader.buf)  # the hot loop keeps the position local
    try:
        while True:
            if i >= end:
                reader.i = i
                if not reader.fill():
                    raise _Broken("the data ends before the pickle's STOP")
                buf, i, end = reader.buf, reader.i, len(reader.buf)
            code = buf[i]
            i += 1
            count += 1
            if count > MAX_OPCODES:
                raise _Broken(f"it has more than {MAX_OPCODES:,} opcodes, more than torchaudit reads")
            effect = simple.get(code)
            if effect is not None:
                npop, pushes = effect
                if npop:
                    if len(stack) - (marks[-1] if marks else 0) < npop:
                        raise _Broken(f"opcode {chr(code)!r} pops {npop} items from a stack of {len(stack)}")
                    del stack[-npop:]
                if pushes:
                    stack.append(None)
                continue
            if code == _MARK_CODE:
                marks.append(len(stack))
                continue
            if code == _POP and len(stack) > (marks[-1] if marks else 0):
                stack.pop()
                continue
            spec = push_arg.get(code)
            if spec is not None:
                width, signed, decode = spec[1], spec[0] == "<i", _DECODE.get(code)
                if i + width <= end:  # the usual case: the whole argument is in the buffer
                    n = int.from_bytes(buf[i : i + width], "little", signed=signed)
                    if 0 <= n <= _KEEP_STRING and i + width + n <= end:
                        raw = buf[i + width : i + width + n]
                        i += width + n
                        stack.append(decode(raw) if decode is not None else None)
                        continue
                reader.i = i
                stack.append(_pushed_argument(code, spec, reader))
                buf, i, end = reader.buf, reader.i, len(reader.buf)
                continue
            effect = to_mark.get(code)
            if effect is not None or (code == _POP and marks and len(stack) == marks[-1]):
                if not marks:
                    raise _Broken(f"opcode {chr(code)!r} finds no MARK on the stack")
                below, pushes = effect or (0, False)
                top = marks.pop()
                if top < below or (marks and top - below < marks[-1]):
                    raise _Broken(f"opcode {chr(code)!r} pops below its MARK")
                del stack[top - below :]
                if pushes:
                    stack.append(None)
                continue
            if code in (_BINPUT, _BINGET, _BININT1) and i < end:
                arg = buf[i]
                i += 1
                if code == _BINPUT:
                    if not stack:
                        raise _Broken("BINPUT on an empty stack")
                    memo[arg] = stack[-1]
                else:
                    stack.append(memo.get(arg) if code == _BINGET else arg)
                continue
            fixed = _FIXED_ARG.get(code)
            if fixed is not None and i + fixed[0] <= end:  # a fixed-size argument in the buffer
                width, what = fixed
                arg = int.from_bytes(buf[i : i + width], "little", signed=what == "int4")
                i += width
                if what == "put":
                    if len(stack) <= (marks[-1] if marks else 0):
                        raise _Broken("LONG_BINPUT on an empty stack")
                    memo[arg] = stack[-1]
                elif what == "get":
                    stack.append(memo.get(arg))
                elif what != "skip":
                    stack.append(arg if what != "float" else None)
                continue
            if code in _TEXT_PUSH and (newline := buf.find(b"\n", i, i + 64)) >= 0:  # INT, LONG, FLOAT
                line = buf[i:newline]
                i = newline + 1
                stack.append(_decimal(line) if code != _FLOAT else None)
                continue
            if code == _GLOBAL and (first := buf.find(b"\n", i, i + 512)) >= 0 and (
                second := buf.find(b"\n", first + 1, first + 512)
            ) >= 0:  # GLOBAL with its two lines in the buffer
                out.add(_normalize(buf[i:first].decode("utf-8"), buf[first + 1 : second].decode("utf-8")))
                i = second + 1
                stack.append(_Global())
                continue
            op = general.get(code)
            if op is None:
                raise _Broken(f"byte {reader.done + i - 1} ({bytes([code])!r}) is not a pickle opcode")
            reader.i = i
            _step(op, _argument(op, reader), stack, marks, memo, out)
            if op.name == "STOP":
                break
            buf, i, end = reader.buf, reader.i, len(reader.buf)
    except _Broken as exc:
        reader.i = max(reader.i, i) if reader.buf is buf else reader.i
        out.broken = f"at byte {(base or 0) + reader.pos}: {exc}"
    except (ValueError, UnicodeDecodeError, OverflowError, struct.error) as exc:
        out.broken = f"at byte {(base or 0) + reader.pos}: {exc}"
    out.opcodes = count
    if base is not None:
        data.seek(base + reader.pos)
    return out


def _step(op: pickletools.OpcodeInfo, arg: object, stack: list[object], marks: list[int],
          memo: dict[int, object], out: PickleScan) -> None:
    """Apply one opcode of the general path; record what it imports."""
    name = op.name
    floor = marks[-1] if marks else 0  # items below the last MARK are out of reach
    npop = 0 if name in ("INST", "GET", "BINGET", "LONG_BINGET") or name in _PUTS_AND_MEMOIZE else len(op.stack_before)
    if len(stack) - floor < npop:
        raise _Broken(f"{name} pops {npop} items from a stack of {len(stack) - floor}")
    popped = stack[len(stack) - npop :] if npop else []
    if npop:
        del stack[-npop:]
    if name in _PUTS_AND_MEMOIZE:
        if len(stack) <= floor:
            raise _Broken(f"{name} on an empty stack")
        memo[cast(int, arg) if name != "MEMOIZE" else len(memo)] = stack[-1]
    elif name in ("GET", "BINGET", "LONG_BINGET"):
        stack.append(memo.get(cast(int, arg)))
    elif name == "DUP":
        stack.extend(popped * 2)
    elif name in ("GLOBAL", "INST"):
        module, attr = cast(tuple[str, str], arg)
        out.add(_normalize(module, attr))
        if name == "INST":
            if not marks:
                raise _Broken("INST finds no MARK on the stack")
            del stack[marks.pop() :]
        stack.append(_Global())
    elif name == "STACK_GLOBAL":
        pushed_module, pushed_name = popped
        both = isinstance(pushed_module, str) and isinstance(pushed_name, str)
        out.add(_normalize(str(pushed_module), str(pushed_name)) if both else UNRESOLVED)
        stack.append(_Global())
    elif name in ("EXT1", "EXT2", "EXT4"):
        out.add(EXTENSION)
        stack.append(_Global())
    elif name == "STOP":
        (value,) = popped
        out.value = value if isinstance(value, int) and not isinstance(value, bool) else None
    elif op.stack_after:  # pushes its argument (INT, LONG, STRING, ...) or a value nobody names
        stack.append(arg if name in _STRINGS or name in _INTS else None)


_PUTS_AND_MEMOIZE = {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"}


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
