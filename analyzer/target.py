"""Resolve a TARGET (``model.py``, ``model.py:NAME``, ``package.module:NAME``) to a model.

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
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import torch.nn as nn

from torchaudit.errors import TargetError

FACTORY_NAMES = ("build_model", "get_model")


@dataclass
class LoadedTarget:
    """A model built from a target, with what is needed to build it again."""

    spec: str
    model: nn.Module
    module: ModuleType  # the Python module the model came from
    name: str  # the class or factory name used
    factory: Callable[[], nn.Module]  # builds a fresh instance the same way
    file: Path | None  # the model file, when the target is a file

    @property
    def source_files(self) -> list[Path]:
        """The user's Python files: the target file and its siblings it imported."""
        files = []
        if self.file is not None:
            files.append(self.file)
            folder = self.file.parent
            for mod in list(sys.modules.values()):
                path = getattr(mod, "__file__", None)
                if getattr(mod, "__name__", "").startswith("_torchaudit_target_"):
                    continue  # another target scanned in this process, not a sibling this one imported
                if path and Path(path).parent == folder and Path(path) != self.file:
                    files.append(Path(path))
        else:
            path = getattr(self.module, "__file__", None)
            if path:
                files.append(Path(path))
        return files


def _import_file(path: Path) -> ModuleType:
    if not path.exists():
        raise TargetError(f"model file not found: {path}", "check the path, or use package.module:NAME")
    if path.is_dir():
        raise TargetError(f"{path} is a directory, not a model file", "pass path/to/model.py")
    if path.suffix != ".py":
        raise TargetError(f"{path} is not a Python file", "pass path/to/model.py or package.module:NAME")
    folder = str(path.parent.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)  # the model file may import its siblings
    name = f"_torchaudit_target_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot import {path}", "pass a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise TargetError(
            f"syntax error in {path} line {exc.lineno}: {exc.msg}", "fix the model file"
        ) from exc
    except BaseException as exc:  # noqa: BLE001 - any failure in user code is a user error
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise TargetError(
            f"importing {path} failed: {type(exc).__name__}: {exc}", "fix the error in the model file or its imports"
        ) from exc
    return module


def _import_module(dotted: str) -> ModuleType:
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        raise TargetError(
            f"cannot import module {dotted!r}: {exc}", "check the module path, or pass path/to/model.py"
        ) from exc
    except SyntaxError as exc:
        raise TargetError(f"syntax error in module {dotted!r} line {exc.lineno}: {exc.msg}", "fix the module") from exc
    except Exception as exc:  # noqa: BLE001
        raise TargetError(f"importing {dotted!r} failed: {type(exc).__name__}: {exc}", "fix the module") from exc


def _needs_no_arguments(fn: Callable[..., Any]) -> bool:
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
    buildable = [c for c in classes if _needs_no_arguments(c)]
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


def _build(obj: Any, label: str) -> nn.Module:
    if not callable(obj):
        raise TargetError(f"{label} is a {type(obj).__name__}, not an nn.Module or a factory", "name an nn.Module class or a zero-argument factory")
    if not _needs_no_arguments(obj):
        raise TargetError(f"{label} needs arguments to be built", "add a zero-argument factory (build_model) that builds it")
    try:
        model = obj()
    except Exception as exc:  # noqa: BLE001 - user code
        raise TargetError(f"building {label} failed: {type(exc).__name__}: {exc}", "fix the constructor or factory") from exc
    if not isinstance(model, nn.Module):
        raise TargetError(
            f"{label} returned a {type(model).__name__}, not an nn.Module", "make the factory return the model"
        )
    return model


def load_target(spec: str, build_context: Callable[[], Any] | None = None) -> LoadedTarget:
    """Import the target and build the model (in whatever mode its constructor leaves it).

    ``build_context`` makes a context manager that every build (the first and each
    ``factory()`` call) runs in; ``--meta`` passes a ``FakeTensorMode`` (analyzer/meta.py).
    """
    path_part, _, name = spec.partition(":")
    if ":" in spec and spec.count(":") == 1 and len(path_part) == 1 and spec[1:3] in (":\\", ":/"):
        path_part, name = spec, ""  # a Windows drive letter, not a NAME
    is_file = path_part.endswith(".py") or "/" in path_part or Path(path_part).exists()
    if is_file:
        file = Path(path_part).resolve()
        module = _import_file(Path(path_part))
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
    def factory() -> nn.Module:
        if build_context is None:
            return _build(obj, label)
        with build_context():
            return _build(obj, label)

    model = factory()

    return LoadedTarget(spec=spec, model=model, module=module, name=name, factory=factory, file=file)
