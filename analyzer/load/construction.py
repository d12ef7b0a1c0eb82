"""The constructor call that built a model, captured while the target's factory ran.

``reload`` needs a fresh instance built the way the factory built the model:
``build_model()`` returning ``Net(hidden=16, temperature=2.0)`` must be rebuilt with those
arguments, not with ``Net``'s defaults. torch has no global hook on module construction
(torch 2.13, ``torch/nn/modules/module.py``), so while the factory runs
:class:`ConstructorCalls` replaces ``nn.Module.__init__`` by a wrapper, which every module's
constructor reaches through ``super().__init__()``. The wrapper finds the frame of the
object's own class ``__init__`` (the one ``type.__call__`` ran) and records its arguments;
when the factory returns, the record of the returned object is its :class:`Construction`.

How it is done, and why:

- ``nn.Module.__init__`` is patched, never ``__new__``: a ``__new__`` set on a class and then
  deleted leaves CPython's ``tp_new`` slot pointing at the lookup, after which ``object.__new__``
  refuses the constructor's arguments (measured on Python 3.11: ``nn.Linear(3, 4)`` raised).
- An argument holds the value it has when the constructor calls ``super().__init__()``
  (normally its first line); ``**kwargs`` is copied then, so popping from it later does not
  change the record.
- A copy (``copy.deepcopy``, pickle) never runs ``__init__``, so it has no record: a factory
  that returns a copy of a template has no :class:`Construction`.
- Modules passed as arguments (``nn.Sequential(*layers)``) that the factory built are
  themselves rebuilt from their own records, so a fresh instance has freshly initialised
  submodules, never the factory's (possibly trained) ones; every other argument (numbers, a
  config object, a module built before the factory ran) is deep-copied when the fresh instance
  is built, as the factory left it (the scan itself changes none of them).
- The patch is installed once for any number of nested or concurrent recorders and removed
  when the last one exits, also when the factory raises; the user's model is only read.
"""

from __future__ import annotations

import copy
import inspect
import sys
import threading
import weakref
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, Callable

import torch.nn as nn

from torchaudit.analyzer.values import flatten
from torchaudit.errors import exception_line

_CO_VARARGS = inspect.CO_VARARGS
_CO_VARKEYWORDS = inspect.CO_VARKEYWORDS


class UncopiedArguments(Exception):
    """A constructor argument that ``copy.deepcopy`` refuses: no fresh instance can be built."""


@dataclass(frozen=True, eq=False)
class Construction:
    """``cls(*args, **kwargs)``: how a module was built. ``parts`` are the modules among the
    arguments (inside lists, tuples, dicts, dataclasses) that were built inside the same
    recording, each with its own construction; the arguments hold the originals."""

    cls: type[nn.Module]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    parts: tuple[tuple[nn.Module, Construction], ...] = ()

    def build(self) -> nn.Module:
        """A new instance built as the original was: fresh parameters and fresh submodules."""
        return self._build({})

    def _build(self, memo: dict[int, Any]) -> nn.Module:
        # one deepcopy memo for the whole build: a config (or a module) passed to several
        # constructors stays shared, and each part stands in for its original wherever it appears
        for original, part in self.parts:
            if id(original) not in memo:
                memo[id(original)] = part._build(memo)
        try:
            args, kwargs = copy.deepcopy((self.args, self.kwargs), memo)
        except Exception as exc:  # noqa: BLE001 - a lock, a file or a generator among the arguments
            raise UncopiedArguments(f"the arguments of {self.describe()} cannot be copied: {exception_line(exc, 200)}") from exc
        return self.cls(*args, **kwargs)

    def describe(self) -> str:
        """``Net(16, 2.0, 10)`` (every parameter the constructor names, defaults included);
        long arguments are shown by their type."""
        parts = [_short(v) for v in self.args] + [f"{k}={_short(v)}" for k, v in self.kwargs.items()]
        return f"{self.cls.__name__}({', '.join(parts)})"


def _short(value: Any) -> str:
    if isinstance(value, nn.Module):
        return f"{type(value).__name__}(...)"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a user's __repr__
        text = ""
    return text if 0 < len(text) <= 24 and "\n" not in text else f"<{type(value).__name__}>"


@dataclass(frozen=True)
class _Call:
    """One recorded constructor call: the object (weakly) and what its class was called with."""

    ref: weakref.ref[nn.Module]
    cls: type[nn.Module]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class ConstructorCalls:
    """A context manager recording the constructor call of every module built inside it.

    ``with ConstructorCalls() as calls: model = factory()`` then ``calls.construction(model)``.
    """

    _lock = threading.Lock()
    _active: list[ConstructorCalls] = []
    _original: Callable[..., None] | None = None

    def __init__(self) -> None:
        self._calls: dict[int, _Call] = {}

    def __enter__(self) -> ConstructorCalls:
        with ConstructorCalls._lock:
            if not ConstructorCalls._active:
                ConstructorCalls._original = nn.Module.__dict__["__init__"]
                nn.Module.__init__ = _recording_init  # type: ignore[method-assign]  # removed in __exit__
            ConstructorCalls._active.append(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        with ConstructorCalls._lock:
            ConstructorCalls._active.remove(self)
            if not ConstructorCalls._active:
                original = ConstructorCalls._original
                if original is not None and nn.Module.__dict__.get("__init__") is _recording_init:  # not someone else's patch
                    nn.Module.__init__ = original  # type: ignore[method-assign]  # the one saved in __enter__
                # _original stays set: a constructor in another thread may be inside the wrapper now

    def _add(self, module: nn.Module, call: _Call) -> None:
        old = self._calls.get(id(module))
        if old is None or old.ref() is not module:  # the first call wins; a dead object's id may be reused
            self._calls[id(module)] = call

    def _call_of(self, module: object) -> _Call | None:
        call = self._calls.get(id(module))
        return call if call is not None and call.ref() is module else None

    def construction(self, module: nn.Module) -> Construction | None:
        """How ``module`` was built inside this context, or ``None`` (built elsewhere, or a copy)."""
        return self._construction(module, {})

    def _construction(self, module: nn.Module, done: dict[int, Construction]) -> Construction | None:
        if id(module) in done:
            return done[id(module)]
        call = self._call_of(module)
        if call is None:
            return None
        parts: dict[int, tuple[nn.Module, Construction]] = {}
        for value in flatten((call.args, call.kwargs))[0]:
            part = self._construction(value, done) if isinstance(value, nn.Module) and id(value) not in parts else None
            if part is not None:
                parts[id(value)] = (value, part)
        done[id(module)] = Construction(call.cls, call.args, call.kwargs, tuple(parts.values()))
        return done[id(module)]


def _recording_init(self: nn.Module, *args: Any, **kwargs: Any) -> None:
    """``nn.Module.__init__`` while a :class:`ConstructorCalls` is active: record, then initialise."""
    original = ConstructorCalls._original
    recorders = list(ConstructorCalls._active)
    if recorders:
        try:
            call = _call_for(self, args, kwargs, sys._getframe(1))
        except Exception:  # noqa: BLE001 - recording is best effort; construction must go on
            call = None
        if call is not None:
            for recorder in recorders:
                recorder._add(self, call)
    assert original is not None  # saved before the patch is installed, and kept
    original(self, *args, **kwargs)


def _call_for(obj: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], frame: FrameType | None) -> _Call | None:
    """What ``type(obj)`` was called with: the arguments of the frame running its own
    ``__init__`` for ``obj`` (or, for a class without an ``__init__`` of its own,
    ``nn.Module.__init__``'s)."""
    cls = type(obj)
    init = inspect.unwrap(cls.__init__)
    if init is _recording_init:
        return _call(obj, cls, args, kwargs)
    code = getattr(init, "__code__", None)
    if code is None or code.co_argcount < 1:
        return None  # not a Python function taking self
    while frame is not None:
        if frame.f_code is code:
            values = frame.f_locals
            if values.get(code.co_varnames[0]) is obj:
                return _arguments(obj, cls, code, values)
        frame = frame.f_back
    return None  # not built by calling its class (e.g. cls.__new__ then a base's __init__)


def _arguments(obj: nn.Module, cls: type[nn.Module], code: Any, values: dict[str, Any]) -> _Call | None:
    names = code.co_varnames
    n, kwonly = code.co_argcount, code.co_kwonlyargcount
    wanted = list(names[1:n]) + list(names[n : n + kwonly])
    star = names[n + kwonly] if code.co_flags & _CO_VARARGS else None
    starstar = names[n + kwonly + (1 if star else 0)] if code.co_flags & _CO_VARKEYWORDS else None
    if any(name not in values for name in wanted + [x for x in (star, starstar) if x]):
        return None  # an argument was deleted before super().__init__()
    args = [values[name] for name in names[1:n]] + list(values[star] if star else ())
    kwargs = {name: values[name] for name in names[n : n + kwonly]}
    kwargs.update(values[starstar] if starstar else {})
    return _call(obj, cls, tuple(args), kwargs)


def _call(obj: nn.Module, cls: type[nn.Module], args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call:
    return _Call(weakref.ref(obj), cls, tuple(args), dict(kwargs))  # new containers: **kwargs may be popped later
