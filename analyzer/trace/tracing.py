"""The tracer chain: plain fx, transformers' fx tracer, ``torch.export`` (non-strict), and a
module-granular graph from forward hooks. Each yields a :class:`ModelGraph`; the first that
works wins, and the reasons the others failed are kept for the ``TA901`` finding.

Every tracer works on a copy of the model in eval mode (tracing in eval mode lets the graph
tell ``training=self.training``, which traces to ``False``, from a literal ``training=True``),
with the global RNG state restored afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import io
import logging
import operator
import sys
import warnings
from typing import TYPE_CHECKING, Any, Callable, Container, Iterator, TypeGuard

import torch
import torch.fx
import torch.nn as nn
from torch.fx.node import Argument, Target
from torch.fx.passes.shape_prop import ShapeProp

from torchaudit.analyzer.trace.graph import ModelGraph, from_fx, tensor_facts
from torchaudit.analyzer.trace.hooks_graph import trace_hooks
from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.safety import model_copy, preserved_rng
from torchaudit.errors import exception_line

if TYPE_CHECKING:
    from transformers import PreTrainedModel
    from transformers.utils.fx import HFTracer

LOST = {
    "fx": "",
    "transformers-fx": "nothing: transformers' tracer yields the same fx-level graph",
    "export": "the graph is at aten level (functional calls appear as aten ops and module calls are "
    "inlined); module and source attribution come from nn_module_stack and stack_trace metadata",
    "hooks": "only leaf-module calls are nodes: functional ops between modules, constants and "
    "attribute reads are not (edges still follow the data through them), so graph rules and the "
    "dynamic stage see module outputs only",
}


class TraceError(Exception):
    """No tracer could trace the model; ``last`` is what the last tracer tried raised (the hook
    fallback runs the model's real forward: its exception is the model's own)."""

    def __init__(self, message: str, last: BaseException | None = None) -> None:
        super().__init__(message)
        self.last = last


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
    """Values for the graph's placeholders, in order: bound inputs, pinned values, defaults.

    fx names a pinned parameter ``mask_1`` (placeholder target); ``*args`` is spread and
    ``**kwargs`` passed as one dict (see :class:`_Propagate`)."""
    values: list[Any] = []
    for n in gm.graph.nodes:
        if n.op != "placeholder":
            continue
        target = str(n.target)
        name = _param_name(target, bound, concrete)
        if name in bound:
            value = bound[name]
            if target.startswith("*") and not target.startswith("**"):
                values.extend(value)
                continue
            values.append(value)
        elif name in concrete:
            values.append(concrete[name])
        else:
            values.append(n.args[0] if n.args else None)
    return values


def _param_name(target: str, *known: Container[str]) -> str:
    """The forward parameter a placeholder stands for: fx renames pinned ones ``mask_1``."""
    name = target.lstrip("*")
    if any(name in k for k in known):
        return name
    base, _, suffix = name.rpartition("_")
    return base if suffix.isdigit() and base else name


class _Propagate(ShapeProp):
    """fx's ShapeProp, also recording each node's device, and ``**kwargs`` passed as one dict."""

    def placeholder(self, target: Target, args: tuple[Argument, ...], kwargs: dict[str, Any]) -> Any:
        if str(target).startswith("**"):
            return next(self.args_iter)
        return super().placeholder(target, args, kwargs)

    def run_node(self, n: torch.fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except RuntimeError as exc:
            cause = exc.__cause__ or exc
            raise TraceError(f"the traced graph fails to run at node {n.name}: {exception_line(cause, limit=200)}") from cause
        n.meta["torchaudit_facts"] = tensor_facts(result)
        return result


def _shape_prop(gm: torch.fx.GraphModule, model: nn.Module, inputs: ExampleInputs | None, concrete: dict[str, Any]) -> None:
    """Run the traced graph on the example inputs: shapes, dtypes, devices. A graph that
    traced but does not run raises, so the chain moves on to the next tracer."""
    if inputs is None:
        return
    bound = _bind(model, inputs.clone())
    with torch.no_grad():
        _Propagate(gm).propagate(*_placeholder_values(gm, bound, concrete))


def _drop_pinning_asserts(gm: torch.fx.GraphModule, concrete: dict[str, Any]) -> None:
    """fx guards each pinned (``concrete_args``) parameter with an assert node; those are
    tracing artefacts, not the model's computation."""
    from torch.fx._symbolic_trace import _assert_is_none

    for n in list(gm.graph.nodes):
        if n.op != "call_function" or n.users:
            continue
        if n.target is _assert_is_none:
            gm.graph.erase_node(n)
        elif n.target is torch._assert and "has been specialized" in str(n.args[1:]):
            cond = n.args[0]
            gm.graph.erase_node(n)
            if isinstance(cond, torch.fx.Node) and not cond.users and cond.op == "call_function":
                gm.graph.erase_node(cond)
    for n in gm.graph.nodes:
        if n.op == "placeholder" and _param_name(str(n.target), concrete) in concrete:
            n.meta["torchaudit_pinned"] = True  # fixed to this value by concrete_args
    gm.recompile()


def trace_fx(model: nn.Module, inputs: ExampleInputs | None, run_check: bool = True, locations: bool = True) -> ModelGraph:
    used = set(_bind(model, inputs)) if inputs is not None else {p.name for p in _forward_params(model) if p.default is inspect.Parameter.empty}
    concrete = _concrete_args(model, used)
    tracer = _RecordingTracer()
    tracer.record_stack_traces = locations
    graph = tracer.trace(model, concrete_args=concrete or None)
    gm = torch.fx.GraphModule(tracer.root, graph)
    _drop_pinning_asserts(gm, concrete)
    if run_check:
        _shape_prop(gm, model, inputs, concrete)
    return from_fx(gm, "fx", model, traced_mode="eval")


def _is_transformers_model(model: nn.Module) -> TypeGuard[PreTrainedModel]:
    if "transformers" not in sys.modules:
        return False
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)


def trace_transformers(model: nn.Module, inputs: ExampleInputs | None, run_check: bool = True, locations: bool = True) -> ModelGraph:
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
    tracer.record_stack_traces = locations
    with _restores_hf_patches(model, HFTracer):
        graph = tracer.trace(model, concrete_args=concrete)
    gm = torch.fx.GraphModule(model, graph)
    _drop_pinning_asserts(gm, concrete)
    if run_check:
        _shape_prop(gm, model, inputs, concrete)
    return from_fx(gm, "transformers-fx", model, traced_mode="eval")


@contextlib.contextmanager
def _restores_hf_patches(model: nn.Module, tracer_cls: type[HFTracer]) -> Iterator[None]:
    """Undo what ``HFTracer.patch_for_tracing`` patches, also when the trace fails.

    transformers 4.57's ``patch_for_tracing`` (transformers/utils/fx.py) replaces ``torch.empty``,
    ``torch.zeros``, ... and classes of the model's module, and restores them only after a
    successful trace: its ``yield`` has no ``finally``. A failed trace (GPT-2, Llama) would
    leave torch's factory functions wrapped for the rest of the process.
    """
    saved_torch = {name: getattr(torch, name) for name in tracer_cls._TORCH_METHODS_TO_PATCH}
    home = inspect.getmodule(model)
    saved_classes = [
        (home, attr, value)
        for attr, value in (vars(home).items() if home is not None else ())
        if any(value is cls for cls in tracer_cls._CLASSES_TO_PATCH)
    ]
    try:
        yield
    finally:
        for name, fn in saved_torch.items():
            setattr(torch, name, fn)
        for mod, attr, value in saved_classes:
            setattr(mod, attr, value)


def trace_export(model: nn.Module, inputs: ExampleInputs | None, run_check: bool = True, locations: bool = True) -> ModelGraph:
    """``torch.export`` runs the model while tracing and always records stack traces:
    ``run_check`` and ``locations`` change nothing here."""
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


TRACERS: list[tuple[str, Callable[..., ModelGraph]]] = [
    ("fx", trace_fx),
    ("transformers-fx", trace_transformers),
    ("export", trace_export),
    ("hooks", trace_hooks),
]


@contextlib.contextmanager
def quiet_tracers() -> Iterator[None]:
    """Tracers that fail log graphs and warnings at length; their one-line reason is kept instead."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        # torch.export prints a failed graph to sys.stderr, fx's ShapeProp a traceback
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def trace_model(
    model: nn.Module, inputs: ExampleInputs | None, mode: str = "eval", *,
    run_check: bool = True, share_parameters: bool = False, locations: bool = True,
) -> ModelGraph:
    """Trace a copy of ``model`` with the first tracer of the chain that works.

    ``mode`` is the mode the copy is put in before tracing; it matters where the trace bakes
    in ``self.training`` (every tracer but the hook fallback). ``run_check=False`` skips the
    run that fills in shapes and proves an fx graph runs (a forward pass of its own): for
    callers that run the graph next anyway and come back with ``run_check=True`` if it fails.
    ``share_parameters``: the copies traced share ``model``'s parameters (see ``model_copy``).
    ``locations=False`` leaves out the source line of each node (fx's stack traces), for a
    graph that is run but never reported on.
    """
    failures: list[str] = []
    last: BaseException | None = None
    for name, fn in TRACERS:
        with preserved_rng(), quiet_tracers():
            work = _work_copy(model, mode, share_parameters)
            try:
                result = fn(work, inputs, run_check=run_check, locations=locations)
            except Exception as exc:  # noqa: BLE001 - a tracer failing is expected; try the next
                if not (name == "transformers-fx" and isinstance(exc, TraceError)):
                    failures.append(f"{name}: {exception_line(exc, limit=200)}")
                last = exc
                continue
        result.traced_mode = mode
        if name != "fx":
            result.notes = failures + ([f"lost: {LOST[name]}"] if LOST[name] else [])
        return result
    raise TraceError("; ".join(failures), last)


def _work_copy(model: nn.Module, mode: str, share_parameters: bool) -> nn.Module:
    work = model_copy(model, share_parameters)
    work.train(mode == "train")
    if _is_transformers_model(work) and getattr(work.config, "use_cache", False):
        # a KV cache in the output stops export and fx alike; transformers' own
        # symbolic_trace switches it off the same way (on this copy only)
        work.config.use_cache = False
    return work


def rebind(graph: ModelGraph, model: nn.Module, mode: str) -> ModelGraph | None:
    """``graph``, run on a copy of ``model`` (which shares its parameters) instead of the copy
    it was traced from; ``None`` when that is not known to give the same graph.

    Only for a ``model`` in the same state as the one traced (a fresh copy of the same model):
    an fx graph is then what tracing that copy would give, since the tracer would run the same
    Python on the same attributes. ``GraphModule(root, graph)`` takes every ``call_module`` and
    ``get_attr`` target from ``root`` (torch/fx/graph_module.py ``_copy_attr``). Export graphs
    carry their own input and output specs and the hook fallback has no graph to rebind.
    """
    if graph.gm is None or graph.tracer not in ("fx", "transformers-fx") or graph.traced_mode != mode:
        return None
    work = _work_copy(model, mode, share_parameters=True)
    for n in graph.gm.graph.nodes:
        if n.op == "get_attr" and not _has_attr(work, n.target):
            # a constant the tracer stored on its root (``_tensor_constant0``): the graph's own
            owner, _, field = n.target.rpartition(".")
            if owner and not _has_attr(work, owner):
                return None
            value = operator.attrgetter(n.target)(graph.gm)
            setattr(operator.attrgetter(owner)(work) if owner else work, field,
                    value.clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value))
    gm = torch.fx.GraphModule(work, copy.deepcopy(graph.gm.graph))
    return dataclasses.replace(graph, gm=gm)


def _has_attr(obj: object, target: str) -> bool:
    try:
        operator.attrgetter(target)(obj)
    except AttributeError:
        return False
    return True
