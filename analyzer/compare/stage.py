"""The dynamic stage: run the requested comparisons, each on copies, and keep going when one fails.

``auto`` (the default) means every comparison that can run here; one that cannot is reported as
``skipped`` with its reason. A comparison that raises becomes an ``error`` result and a
``TA903`` finding; the others still run. The user's model leaves as it came: parameters,
buffers, ``training`` flags and the global RNG state are restored.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator, Sequence

import torch.nn as nn

from torchaudit.analyzer.compare.comparisons import AUTO, COMPARISONS, Options, Skip, skipped
from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.safety import preserved_modes, preserved_rng
from torchaudit.report import ComparisonResult, Finding, Status
from torchaudit.errors import OptionError, exception_line

NO_INPUTS = ("no example inputs, so nothing could be run; pass --input-shape (e.g. --input-shape 8,16) or "
             "--inputs path.py:fn, or define example_inputs() in the model file")


def resolve_names(names: Sequence[str] | None, opts: Options) -> tuple[list[str], set[str]]:
    """The comparisons to run, and which of them the user named explicitly."""
    requested = [n.strip().lower() for n in (names or ("auto",)) if n.strip()]
    explicit: set[str] = set()
    out: list[str] = []
    for n in requested:
        if n == "auto":
            out.extend(AUTO)
        elif n in COMPARISONS:
            out.append(n)
            explicit.add(n)
        else:
            raise OptionError(f"unknown comparison {n!r}", f"use auto or one of {', '.join(COMPARISONS)}")
    if opts.reference is not None or opts.candidate is not None:
        if opts.reference is None or opts.candidate is None:
            raise OptionError("--reference and --candidate come together", "pass both, e.g. --reference cpu:float64 --candidate cpu:float16")
        if "custom" not in out:
            out.append("custom")
        explicit.add("custom")
    return list(dict.fromkeys(out)), explicit


def run_comparisons(
    model: nn.Module, inputs: ExampleInputs | None, names: Sequence[str] | None, opts: Options
) -> tuple[list[ComparisonResult], list[Finding]]:
    from torchaudit.rules.tool.untraceable import ComparisonFailed

    chosen, explicit = resolve_names(names, opts)
    results: list[ComparisonResult] = []
    findings: list[Finding] = []
    failed = ComparisonFailed()
    valueless = _valueless(model)
    for name in chosen:
        if inputs is None:
            results.append(skipped(name, f"{name}: {NO_INPUTS}"))
            continue
        if valueless:
            results.append(skipped(name, f"{name}: {valueless} is on the meta device (no values), so nothing could be run"))
            continue
        try:
            with untouched(model):
                results.append(COMPARISONS[name](model, inputs, opts))
        except Skip as why:
            results.append(skipped(name, str(why)))
            if name in explicit:
                findings.append(failed.finding(f"comparison {name!r} could not run: {why}", fix="follow the reason given, or drop it from --compare",
                                               evidence={"comparison": name}))
        except Exception as exc:  # noqa: BLE001 - one comparison failing must not stop the others
            reason = exception_line(exc, limit=300)
            results.append(ComparisonResult(name=name, reference=skipped(name, "").reference,
                                            candidate=skipped(name, "").candidate, status=Status.ERROR, skipped_reason=reason))
            findings.append(failed.finding(f"comparison {name!r} raised {reason}; the other comparisons went on",
                                           fix="report the model to torchaudit; --compare without this name skips it",
                                           evidence={"comparison": name, "exception": type(exc).__name__}))
    return results, findings


def _valueless(model: nn.Module) -> str | None:
    """The first parameter or buffer without data, by name, or ``None``."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_meta:
            return name
    return None


@contextlib.contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Comparisons work on copies; this restores RNG and modes even if one slips."""
    with preserved_rng(), preserved_modes(model):
        yield


class ProgressBar:
    """A ``rich`` progress bar on stderr, one task per comparison (only for big models on a TTY)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.tasks: dict[str, Any] = {}
        self.progress: Any = None

    def __enter__(self) -> "ProgressBar":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.progress = Progress(TextColumn("comparing {task.description}"), BarColumn(), MofNCompleteColumn(),
                                     console=Console(stderr=True), transient=True)
            self.progress.__enter__()
        return self

    def __call__(self, name: str, done: int, total: int) -> None:
        if self.progress is None:
            return
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total)
        self.progress.update(self.tasks[name], completed=done, total=total)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


def scan_comparisons(
    model: nn.Module,
    inputs: ExampleInputs | None,
    target: Any,
    names: Sequence[str] | None,
    *,
    reference: str | None = None,
    candidate: str | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    progress: bool = False,
    graph: Any = None,
) -> tuple[list[ComparisonResult], list[Finding]]:
    """What ``scan`` runs: parse the options, then every requested comparison. ``graph`` is the
    scan's own trace of ``model``: sides in the configuration it was traced in run it."""
    from torchaudit.analyzer.compare.comparisons import parse_config

    opts = Options(
        seed=seed, atol=atol, rtol=rtol, target=target, graph=graph,
        reference=parse_config(reference, "--reference") if reference else None,
        candidate=parse_config(candidate, "--candidate") if candidate else None,
    )
    big = sum(p.numel() for p in model.parameters()) > 1_000_000
    with ProgressBar(progress and big) as bar:
        opts.progress = bar if bar.enabled else None
        return run_comparisons(model, inputs, names, opts)
