"""One pipeline for every command: target → inputs → checkpoint → trace.

``scan``, ``diff`` and ``compare`` (``torchaudit/``) call :func:`prepare` (or, for two live
models, :func:`given_inputs`), then run their own stage (comparisons, a checkpoint pair) and
hand the rule engine one :class:`~torchaudit.analyzer.context.AuditContext` built by
:meth:`Prepared.context`. Every step works on copies: the user's model leaves as it came.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch.nn as nn

from torchaudit.analyzer.context import AuditContext
from torchaudit.analyzer.environment import environment
from torchaudit.analyzer.load.inputs import ExampleInputs, check_forward, from_value, place_inputs, resolve_inputs
from torchaudit.analyzer.load.meta import as_meta_model, has_no_values, load_meta_target, needs_values, realize_inputs
from torchaudit.analyzer.load.target import LoadedTarget, load_target
from torchaudit.analyzer.safety import model_copy, preserved_rng, seeded
from torchaudit.analyzer.trace.graph import ModelGraph, type_name
from torchaudit.analyzer.trace.tracing import TraceError, trace_model
from torchaudit.errors import InputError, OptionError
from torchaudit.report import ComparisonResult, GraphInfo

if TYPE_CHECKING:
    from torchaudit.analyzer.compare.stage import ComparisonFailure
    from torchaudit.analyzer.load.checkpoint import Checkpoint


@dataclass(frozen=True)
class Prepared:
    """A model ready for the rules and comparisons."""

    model: nn.Module  # the user's model, its meta build, or a copy with --checkpoint loaded
    target: LoadedTarget | None
    inputs: ExampleInputs | None
    checkpoint: Checkpoint | None
    graph: ModelGraph | None
    trace_failures: tuple[str, ...]  # why each tracer failed, when none could trace the model
    meta: bool  # no tensor values: rules that need them are skipped, comparisons do not run
    skeleton: nn.Module | None = None  # --stream-weights: the model with parameters on meta, buffers real

    def context(
        self,
        comparisons: Sequence[ComparisonResult] | None = None,
        failures: Sequence[ComparisonFailure] = (),
    ) -> AuditContext:
        """What the rule engine reads; ``comparisons`` is ``None`` when the dynamic stage did not run."""
        return AuditContext(
            model=self.model, target=self.target, inputs=self.inputs, graph=self.graph, environment=environment(),
            trace_failures=self.trace_failures, checkpoint=self.checkpoint, meta=self.meta,
            comparisons=tuple(comparisons) if comparisons is not None else None, comparison_failures=tuple(failures),
        )

    def target_info(self) -> dict[str, Any]:
        """The report's ``target`` section."""
        t, ckpt, inputs = self.target, self.checkpoint, self.inputs
        return {
            "spec": t.spec if t else None,
            "model_class": type(self.model).__name__,
            "file": str(t.file) if t and t.file else None,
            "checkpoint": str(ckpt.path) if ckpt else None,
            "checkpoint_info": ckpt.describe() if ckpt else None,
            "inputs": inputs.describe() if inputs else None,
            "inputs_source": inputs.source if inputs else None,
        }

    def graph_info(self) -> GraphInfo:
        """The report's ``graph`` section."""
        model, graph = self.model, self.graph
        return GraphInfo(
            tracer=graph.tracer if graph else "none",
            nodes=len(graph) if graph else 0,
            modules=sum(1 for _ in model.modules()),
            parameters=sum(p.numel() for p in model.parameters()),
            buffers=sum(1 for _ in model.buffers()),
            notes=tuple(graph.notes) if graph else self.trace_failures,
        )

    def module_types(self) -> dict[str, str]:
        """Every submodule's qualified class name, by dotted path: the report's graph view names
        the modules that make no node of their own (an encoder, a ModuleList) too."""
        return {name: type_name(m) for name, m in self.model.named_modules() if name}

    def retraced(self, model: nn.Module) -> Prepared:
        """The same preparation with ``model`` (e.g. one with a checkpoint loaded) traced instead."""
        graph, failures = trace(model, self.inputs)
        return dataclasses.replace(self, graph=graph, trace_failures=failures)


def prepare(
    model: nn.Module | str,
    example_inputs: Any = None,
    *,
    input_shapes: Sequence[str] | None = None,
    inputs_spec: str | None = None,
    checkpoint: str | None = None,
    trust_checkpoint: bool = False,
    meta: bool = False,
    traced: bool = True,
    seed: int = 0,
    stream: bool = False,
    own_weights: bool = True,
) -> Prepared:
    """Load the target (an ``nn.Module`` or a TARGET string), find and check its example
    inputs, read ``checkpoint`` safely (loading it into a copy where it loads with
    ``strict=True``) and trace the result (unless ``traced=False``).

    A save_pretrained directory's own weights are its checkpoint when ``checkpoint`` is ``None``,
    unless ``own_weights=False`` (``diff`` reads its two files itself).

    ``meta=True`` builds the model without weight memory (fake tensors, ``analyzer/load/meta.py``)
    and never reads checkpoint data; a model whose tensors have no values is treated the same.

    Building the model and drawing its inputs each run with the global RNGs seeded by ``seed``
    (and restored after): the same command scans the same weights and inputs every time.

    ``stream=True`` prepares as ``meta=True`` does and also keeps the model's skeleton
    (``analyzer/load/skeleton.py``), which comparisons on streamed weights run."""
    skeleton = None
    with seeded(seed):
        if stream:
            module, target, skeleton = load_skeleton(model)
            meta = True
        else:
            module, target, meta = load_model(model, meta)
    with seeded(seed):  # the same inputs however the model was built (a skeleton draws no initial weights)
        inputs = inputs_for(module, target, example_inputs, inputs_spec, input_shapes, meta)
    ckpt = None
    if checkpoint is None and own_weights and target is not None and target.weights is not None:
        checkpoint = str(target.weights)  # a save_pretrained directory's own weights, read by our loader
    if checkpoint is not None:
        from torchaudit.analyzer.load.checkpoint_match import prepare_checkpoint

        with preserved_rng():
            ckpt, module = prepare_checkpoint(module, str(checkpoint), trust=trust_checkpoint)
        if stream:
            from torchaudit.analyzer.load.checkpoint_match import LoadStatus

            ckpt = dataclasses.replace(ckpt, loaded_into_model=LoadStatus(False, STREAMED))
    graph, failures = trace(module, inputs) if traced else (None, ())
    return Prepared(module, target, inputs, ckpt, graph, failures, meta, skeleton)


STREAMED = "not loaded whole: --stream-weights reads it module by module in the comparisons"


def load_skeleton(model: nn.Module | str) -> tuple[nn.Module, LoadedTarget | None, nn.Module]:
    """The module the rules read (fake tensors, as ``--meta``), its target, and its skeleton."""
    from torchaudit.analyzer.load.skeleton import load_skeleton_target, skeleton_of

    if isinstance(model, str):
        target, skeleton = load_skeleton_target(model)
        return target.model, target, skeleton
    if isinstance(model, nn.Module):
        return as_meta_model(model), None, skeleton_of(model)
    raise OptionError(f"expected an nn.Module or a TARGET string, not {type(model).__name__}", "pass the model")


def load_model(model: nn.Module | str, meta: bool) -> tuple[nn.Module, LoadedTarget | None, bool]:
    """The module to scan, its target (for a TARGET string) and whether it has no values."""
    if isinstance(model, str):
        target = load_meta_target(model) if meta else load_target(model)
        return target.model, target, meta
    if isinstance(model, nn.Module):
        meta = meta or has_no_values(model)  # a model built on meta or fake has no values to check
        return (as_meta_model(model) if meta else model), None, meta
    raise OptionError(f"expected an nn.Module or a TARGET string, not {type(model).__name__}", "pass the model")


def inputs_for(
    module: nn.Module, target: LoadedTarget | None, example_inputs: Any, inputs_spec: str | None,
    input_shapes: Sequence[str] | None, meta: bool,
) -> ExampleInputs | None:
    """The example inputs (DESIGN.md's order of sources), on the model's device, checked by one
    forward pass of a copy; ``None`` when no source applies."""
    if example_inputs is not None:
        inputs: ExampleInputs | None = given_inputs(example_inputs)
    else:
        inputs = resolve_inputs(module, target.module if target else None, inputs_spec, list(input_shapes or []))
    if meta:
        inputs = realize_inputs(inputs)
    if inputs is None:
        return None
    inputs = place_inputs(inputs, module)  # on the model's device; the caller's tensors stay
    probe = model_copy(module).eval()
    try:
        check_forward(probe, inputs)
    except InputError as exc:
        if not (meta and needs_values(exc)):  # --meta: forward branches on a value; tracers say so
            raise
    return inputs


def given_inputs(value: Any) -> ExampleInputs:
    """Inputs passed by a caller of the Python API: a tensor, a tuple of positional arguments
    or a dict of keyword arguments."""
    return from_value(value, "the example_inputs argument")


def trace(module: nn.Module, inputs: ExampleInputs | None) -> tuple[ModelGraph | None, tuple[str, ...]]:
    """The graph from the tracer chain, or ``None`` and why each tracer failed."""
    try:
        return trace_model(module, inputs), ()
    except TraceError as exc:
        return None, tuple(str(exc).split("; "))
