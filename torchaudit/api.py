"""The library behind the CLI: ``scan``, ``compare`` and ``assert_consistent``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch.nn as nn

from torchaudit.analyzer.load.meta import HOW as META_HOW, describe_skips
from torchaudit.analyzer.pipeline import prepare
from torchaudit.errors import OptionError
from torchaudit.report import FAIL_ON_CHOICES, ComparisonResult, Finding, Location, Report
from torchaudit.rules.engine import catalogue, run_rules

if TYPE_CHECKING:
    from torchaudit.analyzer.compare.stage import ComparisonFailure


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
    prepared = prepare(model, example_inputs, input_shapes=input_shapes, inputs_spec=inputs_spec, checkpoint=checkpoint,
                       trust_checkpoint=trust_checkpoint, meta=meta, seed=seed)
    comparisons: list[ComparisonResult] | None = None
    failures: list[ComparisonFailure] = []
    if not static_only and not prepared.meta:  # the dynamic stage needs tensor values
        from torchaudit.analyzer.compare.stage import scan_comparisons

        comparisons, failures = scan_comparisons(
            prepared.model, prepared.inputs, prepared.target, compare, reference=reference, candidate=candidate,
            atol=atol, rtol=rtol, seed=seed, progress=progress, graph=prepared.graph,
        )
    ctx = prepared.context(comparisons, failures)
    findings, skipped = run_rules(ctx, select, ignore)
    return Report(
        target=prepared.target_info(),
        environment=ctx.environment,
        graph=prepared.graph_info(),
        findings=sorted(findings, key=_finding_order),
        comparisons=comparisons or [],
        fail_on=fail_on,
        command=command,
        extras=_extras(skipped, prepared.meta),
        graph_outline=prepared.graph.outline() if prepared.graph is not None else (),
        rules=catalogue(),
    )


def _extras(skipped: dict[str, str], meta: bool) -> dict[str, Any]:
    extras: dict[str, Any] = {"skipped_rules": describe_skips(skipped)} if skipped else {}
    if meta:
        extras["meta"] = {"built_with": META_HOW, "values": False, "comparisons": "not run: they need tensor values"}
    return extras


def _finding_order(f: Finding) -> tuple[int, str, str, int, str, str, str]:
    loc = f.location or Location("")
    return (-f.severity.rank, f.rule, loc.file, loc.line or 0, f.module or "", f.node or "", f.message)


def write_json(report: Report, path: str | Path) -> None:
    """The JSON report at ``path`` (``-`` = stdout): ``Report.write(path, "json")``."""
    report.write(path, "json")
