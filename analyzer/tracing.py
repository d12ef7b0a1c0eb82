"""The tracer chain: plain fx, transformers' fx tracer, ``torch.export`` (non-strict), and a
module-granular graph from forward hooks. Each yields a :class:`ModelGraph`; the first that
works wins, and the reasons the others failed are kept for the ``TA901`` finding.

Every tracer works on a copy of the model in eval mode (tracing in eval mode lets the graph
tell ``training=self.training``, which traces to ``False``, from a literal ``training=True``),
with the global RNG state restored afterwards.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import sys
import warnings
import weakref
from typing import Any, Callable

import networkx as nx
import torch
import torch.fx
import torch.nn as nn
from torch.fx.passes.shape_prop import ShapeProp

from torchaudit.analyzer.graph import GraphNode, ModelGraph, from_fx, tensor_facts
from torchaudit.analyzer.inputs import ExampleInputs
from torchaudit.analyzer.safety import model_copy, preserved_rng

LOST = {
    "fx": "",
    "transformers-fx": "nothing: transformers' tracer yields the same fx-level graph",
    "export": "the graph is at aten level (functional calls appear as aten ops and module calls are "
    "inlined); module and source attribution come from nn_module_stack and stack_trace metadata",
    "hooks": "only leaf-module calls are nodes: functional ops between modules, constants and "
    "attribute reads are invisible to graph rules and to the dynamic stage",
}


class TraceError(Exception):
    pass


class _RecordingTracer(torch.fx.Tracer):
    """Plain fx, with user stack traces recorded on each node (off by default in fx)."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True


def _forward_params(model: nn.Module) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return []


def _bind(model: nn.Module, inputs: ExampleInputs) -> dict[str, Any]:
    """Map the example inputs onto ``forward``'s parameter names."""
    sig = inspect.signature(model.forward)
    bound = sig.bind(*inputs.args, **inputs.kwargs)
    return dict(bound.arguments)


def _concrete_args(model: nn.Module, used: set[str]) -> dict[str, Any]:
    """Pin forward's unused keyword parameters to their defaults so fx need not trace them."""
    concrete = {}
    for p in _forward_params(model):
        if p.name in used or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is not inspect.Parameter.empty:
            concrete[p.name] = p.default
    return concrete


def _placeholder_values(gm: torch.fx.GraphModule, bound: dict[str, Any], concrete: dict[str, Any]) -> list[Any]:
    values = []
    for n in gm.graph.nodes:
        if n.op != "placeholder":
            continue
        name = str(n.target).lstrip("*")
        if name in bound:
            values.append(bound[name])
        elif name in concrete:
            values.append(concrete[name])
        else:
            values.append(n.args[0] if n.args else None)
    return values


def _shape_prop(gm: torch.fx.GraphModule, model: nn.Module, inputs: ExampleInputs | None, concrete: dict[str, Any]) -> None:
    if inputs is None:
        return
    bound = _bind(model, inputs.clone())
    with torch.no_grad():
        ShapeProp(gm).propagate(*_placeholder_values(gm, bound, concrete))


def trace_fx(model: nn.Module, inputs: ExampleInputs | None) -> ModelGraph:
    used = set(_bind(model, inputs)) if inputs is not None else {p.name for p in _forward_params(model) if p.default is inspect.Parameter.empty}
    concrete = _concrete_args(model, used)
    tracer = _RecordingTracer()
    graph = tracer.trace(model, concrete_args=concrete or None)
    gm = torch.fx.GraphModule(tracer.root, graph)
    _shape_prop(gm, model, inputs, concrete)
    return from_fx(gm, "fx", model, traced_mode="eval")


def _is_transformers_model(model: nn.Module) -> bool:
    if "transformers" not in sys.modules:
        return False
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)


def trace_transformers(model: nn.Module, inputs: ExampleInputs | None) -> ModelGraph:
    if not _is_transformers_model(model):
        raise TraceError("not a transformers model")
    from transformers.utils.fx import HFTracer, check_if_model_is_supported, get_concrete_args

    check_if_model_is_supported(model)
    if inputs is not None:
        input_names = [k for k, v in _bind(model, inputs).items() if isinstance(v, torch.Tensor)]
    else:
        input_names = list(model.dummy_inputs.keys())
    concrete = get_concrete_args(model, input_names)
    tracer = HFTracer()
    tracer.record_stack_traces = True
    graph = tracer.trace(model, concrete_args=concrete)
    gm = torch.fx.GraphModule(model, graph)
    _shape_prop(gm, model, inputs, concrete)
    return from_fx(gm, "transformers-fx", model, traced_mode="eval")


def trace_export(model: nn.Module, inputs: ExampleInputs | None) -> ModelGraph:
    if inputs is None:
        raise TraceError("torch.export needs example inputs")
    ex = inputs.clone()
    with torch.no_grad():
        ep = torch.export.export(model, ex.args, ex.kwargs, strict=False)
    gm = ep.module()
    for n in list(gm.graph.nodes):
        if n.op == "call_module" and n.target == "_guards_fn" and not n.users:
            gm.graph.erase_node(n)  # export's input guards: not part of the model
    gm.recompile()
    return from_fx(gm, "export", model, traced_mode="eval")


def trace_hooks(model: nn.Module, inputs: ExampleInputs | None) -> ModelGraph:
    """Leaf modules observed through forward hooks, with data-flow edges by tensor identity."""
    g: nx.DiGraph = nx.DiGraph()
    order: list[str] = []
    producers: dict[int, tuple[weakref.ref, str]] = {}

    def add(info: GraphNode, sources: list[Any]) -> None:
        g.add_node(info.name, info=info)
        order.append(info.name)
        for t in _flat_tensors(sources):
            hit = producers.get(id(t))
            if hit is not None and hit[0]() is t:
                g.add_edge(hit[1], info.name)

    def produced(name: str, value: Any) -> None:
        for t in _flat_tensors(value):
            producers[id(t)] = (weakref.ref(t), name)

    leaves = [(name, m) for name, m in model.named_modules() if name and not list(m.children())]
    if inputs is None:
        for name, m in leaves:
            add(_node(name.replace(".", "_"), "call_module", name, m, None), [])
        return ModelGraph("hooks", g, order, None, traced_mode="eval")

    ex = inputs.clone()
    for i, a in enumerate(ex.args):
        add(_node(f"input_{i}", "placeholder", f"input_{i}", None, a), [])
        produced(f"input_{i}", a)
    for k, v in ex.kwargs.items():
        add(_node(k, "placeholder", k, None, v), [])
        produced(k, v)

    calls: dict[str, int] = {}
    handles = []

    def make_hook(path: str, m: nn.Module) -> Callable[..., None]:
        def hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            count = calls.get(path, 0)
            calls[path] = count + 1
            name = path.replace(".", "_") + (f"_{count}" if count else "")
            add(_node(name, "call_module", path, m, out), [args, kwargs])
            produced(name, out)

        return hook

    try:
        for path, m in leaves:
            handles.append(m.register_forward_hook(make_hook(path, m), with_kwargs=True))
        with torch.no_grad():
            out = model(*ex.args, **ex.kwargs)
        add(_node("output", "output", "output", None, None), [out])
    finally:
        for h in handles:
            h.remove()
    return ModelGraph("hooks", g, order, None, traced_mode="eval")


def _node(name: str, op: str, target: str, module: nn.Module | None, value: Any) -> GraphNode:
    """A hook-graph node; ``target`` is the module path for ``call_module`` nodes."""
    shape, dtype, device = tensor_facts(value)
    path = target if op == "call_module" else ""
    return GraphNode(
        name=name,
        op=op,
        target=target,
        module=path,
        module_type=_type_name(module) if module is not None else None,
        module_stack=_stack(path) if path else (),
        shape=shape,
        dtype=dtype,
        device=device,
    )


def _stack(path: str) -> tuple[str, ...]:
    parts = path.split(".")
    return tuple(".".join(parts[: i + 1]) for i in range(len(parts)))


def _type_name(m: nn.Module) -> str:
    return f"{type(m).__module__}.{type(m).__qualname__}"


def _flat_tensors(obj: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, torch.Tensor):
            out.append(o)
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif hasattr(o, "to_tuple") and callable(o.to_tuple):  # transformers ModelOutput
            stack.extend(o.to_tuple())
    return out


TRACERS: list[tuple[str, Callable[[nn.Module, ExampleInputs | None], ModelGraph]]] = [
    ("fx", trace_fx),
    ("transformers-fx", trace_transformers),
    ("export", trace_export),
    ("hooks", trace_hooks),
]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0] if text else ''}".strip()
    return line if len(line) <= 200 else line[:197] + "..."


@contextlib.contextmanager
def quiet_tracers() -> Any:
    """Tracers that fail log graphs and warnings at length; their one-line reason is kept instead."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def trace_model(model: nn.Module, inputs: ExampleInputs | None, mode: str = "eval") -> ModelGraph:
    """Trace a copy of ``model`` with the first tracer of the chain that works.

    ``mode`` is the mode the copy is put in before tracing; it matters where the trace bakes
    in ``self.training`` (every tracer but the hook fallback).
    """
    failures: list[str] = []
    for name, fn in TRACERS:
        with preserved_rng(), quiet_tracers():
            work = model_copy(model)
            work.train(mode == "train")
            if _is_transformers_model(work) and getattr(work.config, "use_cache", False):
                # a KV cache in the output stops export and fx alike; transformers' own
                # symbolic_trace switches it off the same way (on this copy only)
                work.config.use_cache = False
            try:
                result = fn(work, inputs)
            except Exception as exc:  # noqa: BLE001 - a tracer failing is expected; try the next
                if not (name == "transformers-fx" and isinstance(exc, TraceError)):
                    failures.append(f"{name}: {_one_line(exc)}")
                continue
        result.traced_mode = mode
        if name != "fx":
            result.notes = failures + ([f"lost: {LOST[name]}"] if LOST[name] else [])
        return result
    raise TraceError("; ".join(failures))
