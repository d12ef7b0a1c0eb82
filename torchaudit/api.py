"""The library behind the CLI: ``scan``, ``compare`` and ``assert_consistent``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch.nn as nn

from torchaudit.analyzer.context import AuditContext
from torchaudit.analyzer.environment import environment
from torchaudit.analyzer.load.inputs import ExampleInputs, check_forward, from_value, place_inputs, resolve_inputs
from torchaudit.analyzer.load.meta import HOW as META_HOW, as_meta_model, describe_skips, has_no_values, load_meta_target, needs_values, realize_inputs
from torchaudit.analyzer.safety import model_copy, preserved_rng
from torchaudit.analyzer.load.target import LoadedTarget, load_target
from torchaudit.analyzer.trace.tracing import TraceError, trace_model
from torchaudit.errors import InputError, OptionError
from torchaudit.report import FAIL_ON_CHOICES, Finding, GraphInfo, Location, Report
from torchaudit.rules.engine import run_rules


def scan(
    model: nn.Module | str,
    example_inputs: Any = None,
    *,
    input_shapes: Sequence[str] | None = None,
    inputs_spec: str | None = None,
    select: Sequence[str] | None = None,
    ignore: Sequence[str] | None = None,
    fail_on: str = "error",
    command: str | None = None,
    compare: Sequence[str] | None = ("auto",),
    reference: str | None = None,
    candidate: str | None = None,
    static_only: bool = False,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    progress: bool = False,
    checkpoint: str | None = None,
    trust_checkpoint: bool = False,
    meta: bool = False,
) -> Report:
    """Scan a model (an ``nn.Module`` or a TARGET string) and return its :class:`Report`.

    The model is never changed: tracing and every run happen on copies, and the global RNG
    state is restored. ``checkpoint`` is read safely (see ``analyzer/load/checkpoint.py``) and,
    where it loads with ``strict=True``, loaded into a copy that the later stages use;
    ``trust_checkpoint`` allows unpickling with ``weights_only=False``.
    ``meta=True`` builds the model without weight memory (fake tensors, see
    analyzer/load/meta.py), skips the rules that need tensor values and never loads checkpoint data.
    """
    if fail_on not in FAIL_ON_CHOICES:
        raise OptionError(f"--fail-on {fail_on!r} is not one of {', '.join(FAIL_ON_CHOICES)}", "pick one of those")
    target: LoadedTarget | None = None
    if isinstance(model, str):
        target = load_meta_target(model) if meta else load_target(model)
        module = target.model
    elif isinstance(model, nn.Module):
        meta = meta or has_no_values(model)  # a model built on meta or fake has no values to check
        module = as_meta_model(model) if meta else model
    else:
        raise OptionError(f"scan() takes an nn.Module or a TARGET string, not {type(model).__name__}", "pass the model")

    with preserved_rng():
        if example_inputs is not None:
            inputs: ExampleInputs | None = from_value(example_inputs, "the example_inputs argument")
        else:
            inputs = resolve_inputs(module, target.module if target else None, inputs_spec, list(input_shapes or []))
        if meta:
            inputs = realize_inputs(inputs)
        if inputs is not None:
            inputs = place_inputs(inputs, module)  # on the model's device; the caller's tensors stay
            probe = model_copy(module).eval()
            try:
                check_forward(probe, inputs)
            except InputError as exc:
                if not (meta and needs_values(exc)):  # --meta: forward branches on a value; tracers say so
                    raise
            del probe

    ckpt = None
    if checkpoint is not None:
        from torchaudit.analyzer.load.checkpoint_match import prepare_checkpoint

        with preserved_rng():
            ckpt, module = prepare_checkpoint(module, str(checkpoint), trust=trust_checkpoint)

    ctx = AuditContext(model=module, target=target, inputs=inputs, graph=None, environment=environment(), options={"meta": meta})
    ctx.checkpoint = ckpt
    findings: list[Finding] = []
    try:
        ctx.graph = trace_model(module, inputs)
    except TraceError as exc:
        ctx.trace_failures = str(exc).split("; ")
    comparisons: list[Any] = []
    if not static_only and not meta:  # the dynamic stage (it needs tensor values): its TA7xx rules read ctx.options["comparisons"]
        from torchaudit.analyzer.compare.stage import scan_comparisons
        from torchaudit.rules.engine import selected

        comparisons, failures = scan_comparisons(
            module, inputs, target, compare, reference=reference, candidate=candidate,
            atol=atol, rtol=rtol, seed=seed, progress=progress, graph=ctx.graph,
        )
        ctx.options["comparisons"] = comparisons
        findings.extend(f for f in failures if selected(f.rule, select, ignore))
    rule_findings, skipped = run_rules(ctx, select, ignore)
    findings.extend(rule_findings)
    return Report(
        target=_target_info(ctx),
        environment=ctx.environment,
        graph=_graph_info(ctx),
        findings=sorted(findings, key=_finding_order),
        comparisons=comparisons,
        fail_on=fail_on,
        command=command,
        extras=_extras(skipped, meta),
        graph_outline=ctx.graph.outline() if ctx.graph is not None else (),
    )


def _extras(skipped: dict[str, str], meta: bool) -> dict[str, Any]:
    extras: dict[str, Any] = {"skipped_rules": describe_skips(skipped)} if skipped else {}
    if meta:
        extras["meta"] = {"built_with": META_HOW, "values": False, "comparisons": "not run: they need tensor values"}
    return extras


def _finding_order(f: Finding) -> tuple[Any, ...]:
    loc = f.location or Location("")
    return (-f.severity.rank, f.rule, loc.file, loc.line or 0, f.module or "", f.node or "", f.message)


def _target_info(ctx: AuditContext) -> dict[str, Any]:
    return {
        "spec": ctx.target.spec if ctx.target else None,
        "model_class": type(ctx.model).__name__,
        "file": str(ctx.target.file) if ctx.target and ctx.target.file else None,
        "checkpoint": str(ctx.checkpoint.path) if ctx.checkpoint else None,
        "checkpoint_info": ctx.checkpoint.describe() if ctx.checkpoint else None,
        "inputs": ctx.inputs.describe() if ctx.inputs else None,
        "inputs_source": ctx.inputs.source if ctx.inputs else None,
    }


def _graph_info(ctx: AuditContext) -> GraphInfo:
    model = ctx.model
    graph = ctx.graph
    return GraphInfo(
        tracer=graph.tracer if graph else "none",
        nodes=len(graph) if graph else 0,
        modules=sum(1 for _ in model.modules()),
        parameters=sum(p.numel() for p in model.parameters()),
        buffers=sum(1 for _ in model.buffers()),
        notes=tuple(graph.notes) if graph else tuple(ctx.trace_failures),
    )


def write_json(report: Report, path: str | Path) -> None:
    from torchaudit.reports.json_report import render_json

    text = render_json(report)
    if str(path) == "-":
        print(text)
    else:
        Path(path).write_text(text + "\n", encoding="utf-8")
