"""The last tracer of the chain: a module-granular graph observed through forward hooks.

Every call of a leaf module (one without children) is a node. Edges follow the data: a
``TorchFunctionMode`` carries, for every tensor made during ``forward``, the set of graph nodes
it derives from, through the functional ops between modules (``h.mean(dim=(2, 3))``,
``x + y``), so ``head`` gets an edge from the module that made ``h`` even though it received a
new tensor. Each node's location is the line in the user's code that called the module.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import weakref
from types import FrameType
from typing import Any, Callable, Collection, Iterator

import networkx as nx
import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from torchaudit.analyzer.trace.graph import GraphNode, ModelGraph, forward_def_location, tensor_facts, type_name
from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.values import tensor_leaves
import torchaudit as _pkg
from torchaudit.report import Location

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
# torchaudit's own frames (its analyzer and its package folder), never the user's code
_OWN_DIRS = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep, os.path.dirname(os.path.abspath(_pkg.__file__)) + os.sep)


class _Provenance(TorchFunctionMode):
    """Which graph nodes each live tensor derives from (keyed by identity, checked by weakref)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[int, tuple[weakref.ref, frozenset[str]]] = {}

    def of(self, obj: object) -> frozenset[str]:
        found: set[str] = set()
        for t in tensor_leaves(obj):
            hit = self._seen.get(id(t))
            if hit is not None and hit[0]() is t:
                found |= hit[1]
        return frozenset(found)

    def mark(self, obj: object, names: frozenset[str]) -> None:
        for t in tensor_leaves(obj):
            try:
                self._seen[id(t)] = (weakref.ref(t), names)
            except TypeError:  # not weak-referenceable
                continue

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the mode for a while (the comparison's own ops inside a hook are not the model's)."""
        self.__exit__(None, None, None)
        try:
            yield
        finally:
            self.__enter__()

    def __torch_function__(
        self, func: Callable[..., Any], types: Collection[type], args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        sources = self.of((args, kwargs))
        if sources:
            self.mark(out, sources | self.of(out))  # in-place ops return their input
        return out


def _caller_location() -> Location | None:
    """The innermost frame in the user's code (not torch, not torchaudit)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if not (path.startswith(_TORCH_DIR) or path.startswith(_OWN_DIRS) or path.startswith("<")):
            return Location(file=path, line=frame.f_lineno)
        frame = frame.f_back
    return None


def _stack(path: str) -> tuple[str, ...]:
    parts = path.split(".")
    return tuple(".".join(parts[: i + 1]) for i in range(len(parts)))


def _input_names(model: nn.Module, inputs: ExampleInputs) -> list[tuple[str, Any]]:
    try:
        bound = inspect.signature(model.forward).bind(*inputs.args, **inputs.kwargs).arguments
        return list(bound.items())
    except (TypeError, ValueError):
        return [(f"input_{i}", a) for i, a in enumerate(inputs.args)] + list(inputs.kwargs.items())


class HookGraph:
    """A module-granular graph built while a forward runs: one node per leaf-module call, named
    ``path_with_underscores[_N]`` (``N`` counts repeated calls), with data-flow edges from the
    active :class:`_Provenance` and the caller's source line. :func:`trace_hooks` builds one;
    the module-granular comparison (``compare.pair.hook_pair``) builds one of the candidate's
    run as it compares, so its nodes have modules, lines and predecessors."""

    def __init__(self, model: nn.Module) -> None:
        self.g: nx.DiGraph = nx.DiGraph()
        self.order: list[str] = []
        self.flow = _Provenance()
        self.calls: dict[str, int] = {}
        self._root_type = type_name(model)
        self._root_def = forward_def_location(model)  # inputs and output: the root's def forward line

    def add(self, name: str, op: str, target: str, module: nn.Module | None, path: str, value: Any,
            sources: frozenset[str], location: Location | None = None) -> None:
        shape, dtype, device = tensor_facts(value)
        self.g.add_node(name, info=GraphNode(
            name=name, op=op, target=target, module=path,
            module_type=type_name(module) if module is not None else self._root_type,
            module_stack=_stack(path) if path else (), shape=shape, dtype=dtype, device=device,
            location=location or (self._root_def if op in ("placeholder", "output") else None),
        ))
        self.order.append(name)
        for src in sorted(sources):
            if src in self.g:
                self.g.add_edge(src, name)

    def inputs(self, model: nn.Module, ex: ExampleInputs) -> None:
        for name, value in _input_names(model, ex):
            self.add(name, "placeholder", name, None, "", value, frozenset())
            self.flow.mark(value, frozenset({name}))

    def call(self, path: str, module: nn.Module, args: Any, out: Any) -> str:
        """Add the call of leaf module ``path`` (inputs ``args``, output ``out``); its node name."""
        count = self.calls.get(path, 0)
        self.calls[path] = count + 1
        name = call_name(path, count)
        self.add(name, "call_module", path, module, path, out, self.flow.of(args), _caller_location())
        self.flow.mark(out, frozenset({name}))
        return name

    def output(self, out: Any) -> None:
        self.add("output", "output", "output", None, "", out, self.flow.of(out))

    def graph(self) -> ModelGraph:
        return ModelGraph("hooks", self.g, self.order, None, traced_mode="eval")


def call_name(path: str, count: int) -> str:
    """The node name of call ``count`` (0-based) of the module at ``path``: ``a_b``, ``a_b_1``, ..."""
    return path.replace(".", "_") + (f"_{count}" if count else "")


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(path, m) for path, m in model.named_modules() if path and not list(m.children())]


def trace_hooks(model: nn.Module, inputs: ExampleInputs | None, run_check: bool = True, locations: bool = True) -> ModelGraph:
    """Run ``forward`` once on ``model`` (a copy) and record leaf-module calls with data flow.
    (It always runs the model and finds each call's source line: ``run_check`` and
    ``locations`` change nothing.)"""
    built = HookGraph(model)
    leaves = leaf_modules(model)
    if inputs is None:
        for path, m in leaves:
            built.add(call_name(path, 0), "call_module", path, m, path, None, frozenset())
        return built.graph()

    ex = inputs.clone()
    built.inputs(model, ex)

    def make_hook(path: str, m: nn.Module) -> Callable[..., None]:
        def hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            built.call(path, m, (args, kwargs), out)

        return hook

    handles = [m.register_forward_hook(make_hook(path, m), with_kwargs=True) for path, m in leaves]
    try:
        with torch.no_grad(), built.flow:
            out = model(*ex.args, **ex.kwargs)
        built.output(out)
    finally:
        for h in handles:
            h.remove()
    return built.graph()
