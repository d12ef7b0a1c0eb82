"""The library behind the CLI: ``scan``, ``compare`` and ``assert_consistent``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch.nn as nn

from torchaudit.analyzer.load.meta import HOW as META_HOW, describe_skips
from torchaudit.analyzer.pipeline import prepare
from torchaudit.report import ComparisonResult, Finding, Location, Report
from torchaudit.rules.config import check_selectors
from torchaudit.rules.engine import catalogue, run_rules
from torchaudit.errors import OptionError
from torchaudit.settings import Settings

if TYPE_CHECKING:
    from torchaudit.analyzer.compare.stage import ComparisonFailure
    from torchaudit.analyzer.compare.streaming import Streaming


def scan(
    model: nn.Module | str,
    example_inputs: Any = None,
    *,
    settings: Settings | None = None,
    input_shapes: Sequence[str] | None = None,
    inputs_spec: str | None = None,
    select: Sequence[str] | None = None,
    ignore: Sequence[str] | None = None,
    fail_on: str | None = None,
    command: str | None = None,
    compare: Sequence[str] | None = None,
    reference: str | None = None,
    candidate: str | None = None,
    static_only: bool | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int | None = None,
    progress: bool = False,
    checkpoint: str | None = None,
    trust_checkpoint: bool | None = None,
    meta: bool | None = None,
    stream_weights: bool | None = None,
    against: str | None = None,
) -> Report:
    """Scan a model (an ``nn.Module`` or a TARGET string) and return its :class:`Report`.

    ``settings`` (a :class:`torchaudit.settings.Settings`, e.g. from
    ``torchaudit.settings.resolve(target, {})``, which reads ``[tool.torchaudit]``) holds every
    option; the keyword arguments, where given, win over it. Report paths in ``settings``
    (json, html, markdown, sarif) and ``baseline`` are the command line's business, not this function's.

    The model is never changed: tracing and every run happen on copies, and the global RNG
    state is restored. ``checkpoint`` is read safely (see ``analyzer/load/checkpoint.py``) and,
    where it loads with ``strict=True``, loaded into a copy that the later stages use;
    ``trust_checkpoint`` allows unpickling with ``weights_only=False``.
    ``meta=True`` builds the model without weight memory (fake tensors, see
    analyzer/load/meta.py), skips the rules that need tensor values and never loads checkpoint data.
    ``stream_weights=True`` also does, and runs the comparisons on weights read from the
    safetensors checkpoint as each module needs them (``analyzer/compare/streaming.py``);
    ``None`` (the default) does so when the weights exceed half of the available memory.
    ``against`` (a folder written by ``torchaudit record``) adds the ``record`` comparison: the
    recording against the live model; one of another model, graph or inputs is refused.
    """
    s = (settings or Settings()).replace(
        input_shape=input_shapes, inputs=inputs_spec, select=select, ignore=ignore, fail_on=fail_on, compare=compare,
        reference=reference, candidate=candidate, static_only=static_only, atol=atol, rtol=rtol, seed=seed,
        checkpoint=checkpoint, trust_checkpoint=trust_checkpoint, meta=meta, stream_weights=stream_weights, against=against,
    )
    check_selectors(s.select, s.ignore)
    from torchaudit.analyzer.load.weight_files import streaming_plan

    if s.stream_weights and s.against is not None:
        raise OptionError("--against compares with the live model's weights in memory; it does not stream them",
                          "drop --stream-weights")
    # streaming is for the comparisons (which --meta and --static-only do not run), and
    # --against's fingerprint hashes the weights in memory
    automatic = s.stream_weights is None and not (s.static_only or s.meta) and s.against is None
    plan = streaming_plan(model, s.checkpoint, None if automatic else bool(s.stream_weights))
    prepared = prepare(model, example_inputs, input_shapes=s.input_shape or None, inputs_spec=s.inputs,
                       checkpoint=s.checkpoint, trust_checkpoint=s.trust_checkpoint, meta=s.meta, seed=s.seed,
                       stream=plan is not None)
    recording = None
    if s.against is not None:  # a recording of another model, graph or inputs: exit 2 before anything runs
        from torchaudit.recording import check_against

        recording = check_against(s.against, prepared, s)
    comparisons: list[ComparisonResult] | None = None
    failures: list[ComparisonFailure] = []
    streaming = None
    if plan is not None and prepared.skeleton is not None:
        from torchaudit.analyzer.compare.streaming import Streaming
        from torchaudit.analyzer.load.weight_files import WeightFiles

        streaming = Streaming(prepared.skeleton, WeightFiles(plan[0]), plan[1])
    if not s.static_only and (not prepared.meta or streaming is not None):  # the dynamic stage needs tensor values
        from torchaudit.analyzer.compare.stage import scan_comparisons

        comparisons, failures = scan_comparisons(
            streaming.skeleton if streaming is not None else prepared.model, prepared.inputs, prepared.target, s.compare,
            reference=s.reference, candidate=s.candidate, atol=s.atol, rtol=s.rtol, seed=s.seed, progress=progress,
            graph=prepared.graph if streaming is None else None, streaming=streaming,
            against=s.against,
        )
    ctx = prepared.context(comparisons, failures)
    findings, skipped = run_rules(ctx, s.select, s.ignore)
    return Report(
        target=prepared.target_info(),
        environment=ctx.environment,
        graph=prepared.graph_info(),
        findings=sorted(findings, key=_finding_order),
        comparisons=comparisons or [],
        fail_on=s.fail_on,
        command=command,
        extras=_extras(skipped, prepared.meta, streaming) | ({"recording": recording} if recording else {}),
        graph_outline=prepared.graph.outline() if prepared.graph is not None else (),
        module_types=prepared.module_types(),
        rules=catalogue(),
    )


def _extras(skipped: dict[str, str], meta: bool, streaming: Streaming | None = None) -> dict[str, Any]:
    extras: dict[str, Any] = {"skipped_rules": describe_skips(skipped, streaming is not None)} if skipped else {}
    if streaming is not None:
        extras["streamed_weights"] = streaming.to_dict()
    elif meta:
        extras["meta"] = {"built_with": META_HOW, "values": False, "comparisons": "not run: they need tensor values"}
    return extras


def _finding_order(f: Finding) -> tuple[int, str, str, int, str, str, str]:
    loc = f.location or Location("")
    return (-f.severity.rank, f.rule, loc.file, loc.line or 0, f.module or "", f.node or "", f.message)


def write_json(report: Report, path: str | Path) -> None:
    """The JSON report at ``path`` (``-`` = stdout): ``Report.write(path, "json")``."""
    report.write(path, "json")
