"""Resolve a TARGET (``model.py``, ``model.py:NAME``, ``package.module:NAME``, or a
``save_pretrained`` directory: analyzer/load/transformers_dir.py) to a model.

Discovery for a bare ``model.py`` (DESIGN.md): a factory named ``build_model`` or
``get_model`` wins; else the single ``nn.Module`` subclass defined in that file that needs no
arguments; else a :class:`TargetError` listing the candidates.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, ContextManager

import torch.nn as nn

from torchaudit.analyzer.load.construction import Construction, ConstructorCalls
from torchaudit.errors import TargetError

FACTORY_NAMES = ("build_model", "get_model")


@dataclass(frozen=True)
class LoadedTarget:
    """A model built from a target, with what is needed to build it again."""

    spec: str
    model: nn.Module
    module: ModuleType  # the Python module the model came from
    name: str  # the class or factory name used
    factory: Callable[[], nn.Module]  # builds a fresh instance the same way
    file: Path | None  # the model file, when the target is a file

    user_files: tuple[Path, ...] = ()  # the user's files the target imported (see _user_files)
    construction: Construction | None = None  # the constructor call that built ``model`` inside the factory
    weights: Path | None = None  # a save_pretrained directory's weights: its checkpoint unless --checkpoint names one

    @property
    def source_files(self) -> list[Path]:
        """The user's Python files: the target's own file first, then the files next to it
        (same folder or below) that it imported, directly or through another such file."""
        file: str | None = getattr(self.module, "__file__", None)
        own = Path(file).resolve() if file else None
        files = [own] if own else []
        return files + [f for f in self.user_files if f != own]


def _module_name(path: Path) -> str:
    """The name Python would give the file when imported from its folder, when that is free
    and not another module's; else a private unique name (never shadow a real package)."""
    stem = path.stem
    if stem.isidentifier() and stem not in sys.modules and not _installed(stem, path.parent):
        return stem
    return f"_torchaudit_target_{stem}_{uuid.uuid4().hex[:8]}"


def _installed(name: str, folder: Path) -> bool:
    """Whether ``name`` is importable from somewhere else than ``folder`` (stdlib, site-packages)."""
    import importlib.machinery

    if name in sys.builtin_module_names:
        return True
    elsewhere = [p for p in sys.path if p and Path(p).resolve() != folder.resolve()]
    try:
        return importlib.machinery.PathFinder.find_spec(name, elsewhere) is not None
    except (ImportError, ValueError):
        return True


def import_file(path: Path) -> ModuleType:
    if not path.exists():
        raise TargetError(f"model file not found: {path}", "check the path, or use package.module:NAME")
    if path.is_dir():
        raise TargetError(f"{path} is a directory, not a model file", "pass path/to/model.py")
    if path.suffix != ".py":
        raise TargetError(f"{path} is not a Python file", "pass path/to/model.py or package.module:NAME")
    folder = str(path.parent.resolve())
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)  # the model file may import its siblings, first, as `python model.py` would
    try:
        return _exec_file(path)
    finally:
        if added and folder in sys.path:  # siblings stay importable later, but never shadow an installed
            sys.path.remove(folder)       # package (a jinja2.py beside the model) for the rest of the process
            sys.path.append(folder)


def _exec_file(path: Path) -> ModuleType:
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path.resolve())  # absolute: node locations match source_files
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot import {path}", "pass a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        where = f"{Path(exc.filename).name} line {exc.lineno}" if exc.filename else f"line {exc.lineno}"
        raise TargetError(f"syntax error in {where}: {exc.msg}", "fix the model file") from exc
    except BaseException as exc:  # noqa: BLE001 - any failure in user code is a user error
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise TargetError(
            f"importing {path} failed: {type(exc).__name__}: {_first_line(exc)}",
            "fix the error in the model file or its imports",
        ) from exc
    return module


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


def _user_files(module: ModuleType, before: set[str]) -> tuple[Path, ...]:
    """Files under the target's folder that its import brought in: modules new in
    ``sys.modules`` since ``before``, and modules whose names or objects it holds."""
    own = getattr(module, "__file__", None)
    if not own:
        return ()
    folder = Path(own).resolve().parent
    candidates = [m for n, m in list(sys.modules.items()) if n not in before]
    for value in vars(module).values():
        holder = value if isinstance(value, ModuleType) else sys.modules.get(getattr(value, "__module__", "") or "")
        if holder is not None:
            candidates.append(holder)
    found: dict[Path, None] = {}
    for m in candidates:
        path = getattr(m, "__file__", None)
        if not path or not path.endswith(".py"):
            continue
        resolved = Path(path).resolve()
        if folder in resolved.parents and "site-packages" not in resolved.parts:
            found.setdefault(resolved, None)
    return tuple(sorted(found))


def _import_module(dotted: str) -> ModuleType:
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # the console script does not put the working folder on sys.path
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        raise TargetError(
            f"cannot import module {dotted!r}: {exc}", "check the module path, or pass path/to/model.py"
        ) from exc
    except SyntaxError as exc:
        raise TargetError(f"syntax error in module {dotted!r} line {exc.lineno}: {exc.msg}", "fix the module") from exc
    except BaseException as exc:  # noqa: BLE001 - user code
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise TargetError(f"importing {dotted!r} failed: {type(exc).__name__}: {_first_line(exc)}", "fix the module") from exc


def needs_no_arguments(fn: Callable[..., Any]) -> bool:
    """Whether ``fn()`` (a class or a factory) can be called without arguments."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in sig.parameters.values()
    )


def _module_classes(module: ModuleType) -> list[type[nn.Module]]:
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__
    ]


def _discover(module: ModuleType, where: str) -> str:
    for name in FACTORY_NAMES:
        if callable(getattr(module, name, None)):
            return name
    classes = _module_classes(module)
    buildable = [c for c in classes if needs_no_arguments(c)]
    if len(buildable) == 1:
        return buildable[0].__name__
    if not classes:
        raise TargetError(
            f"no nn.Module subclass or build_model()/get_model() factory found in {where}",
            f"define one, or name it with {where}:NAME",
        )
    listed = ", ".join(sorted(c.__name__ for c in (buildable or classes)))
    if not buildable:
        raise TargetError(
            f"every nn.Module in {where} needs constructor arguments ({listed})",
            f"add a build_model() factory, or name a zero-argument factory with {where}:NAME",
        )
    raise TargetError(
        f"several candidate models in {where}: {listed}",
        f"pick one with {where}:NAME (e.g. {where}:{sorted(c.__name__ for c in buildable)[0]})",
    )


def _build(obj: object, label: str) -> nn.Module:
    if not callable(obj):
        raise TargetError(f"{label} is a {type(obj).__name__}, not an nn.Module or a factory", "name an nn.Module class or a zero-argument factory")
    if not needs_no_arguments(obj):
        raise TargetError(f"{label} needs arguments to be built", "add a zero-argument factory (build_model) that builds it")
    try:
        model = obj()
    except BaseException as exc:  # noqa: BLE001 - user code (SystemExit included)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise TargetError(
            f"building {label} failed: {type(exc).__name__}: {_first_line(exc)}", "fix the constructor or factory"
        ) from exc
    if not isinstance(model, nn.Module):
        raise TargetError(
            f"{label} returned a {type(model).__name__}, not an nn.Module", "make the factory return the model"
        )
    return model


def load_target(spec: str, build_context: Callable[[], ContextManager[object]] | None = None) -> LoadedTarget:
    """Import the target and build the model (in whatever mode its constructor leaves it).

    ``build_context`` makes a context manager that every build (the first and each
    ``factory()`` call) runs in; ``--meta`` passes a ``FakeTensorMode`` (analyzer/load/meta.py).
    """
    if Path(spec).is_dir():
        from torchaudit.analyzer.load.transformers_dir import load_transformers_dir

        return load_transformers_dir(spec, build_context)
    path_part, _, name = spec.partition(":")
    if ":" in spec and spec.count(":") == 1 and len(path_part) == 1 and spec[1:3] in (":\\", ":/"):
        path_part, name = spec, ""  # a Windows drive letter, not a NAME
    is_file = path_part.endswith(".py") or "/" in path_part or Path(path_part).exists()
    before = set(sys.modules)
    if is_file:
        file = Path(path_part).resolve()
        module = import_file(Path(path_part))
        where = path_part
    else:
        if not name:
            raise TargetError(
                f"{spec!r} is neither a .py file nor package.module:NAME", "pass path/to/model.py or package.module:NAME"
            )
        file = None
        module = _import_module(path_part)
        where = path_part
    if not name:
        name = _discover(module, where)
    obj = module
    for part in name.split("."):
        if not hasattr(obj, part):
            raise TargetError(f"{where} has no attribute {name!r}", f"check the name; candidates: {', '.join(sorted(c.__name__ for c in _module_classes(module))) or 'none'}")
        obj = getattr(obj, part)
    label = f"{where}:{name}"
    if isinstance(obj, nn.Module):
        raise TargetError(f"{label} is a module instance, not a class or factory", "name its class, or a factory that builds it")
    def build() -> tuple[nn.Module, Construction | None]:
        with ConstructorCalls() as calls, (build_context() if build_context is not None else nullcontext()):
            built = _build(obj, label)
        return built, calls.construction(built)

    def factory() -> nn.Module:
        return build()[0]

    model, construction = build()

    return LoadedTarget(
        spec=spec, model=model, module=module, name=name, factory=factory, file=file,
        user_files=_user_files(module, before), construction=construction,
    )
