"""The dynamic stage: run the requested comparisons, each on copies, and keep going when one fails.

``auto`` (the default) means every comparison that can run here; one that cannot is reported as
``skipped`` with its reason. A comparison that raises becomes an ``error`` result and a
:class:`ComparisonFailure` record, which the rule engine reports (TA903 when torchaudit failed,
TA904 when the model's own code raised); the others still run. The user's model leaves as it came: parameters,
buffers, ``training`` flags and the global RNG state are restored.
"""

from __future__ import annotations

import contextlib
import sys
import sysconfig
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
import torch.nn as nn

from torchaudit.analyzer.compare.comparisons import AUTO, COMPARISONS, Options, Skip, planned, skipped
from torchaudit.analyzer.compare.pair import NotStreamed
from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.load.target import LoadedTarget
from torchaudit.analyzer.trace.graph import ModelGraph
from torchaudit.analyzer.trace.tracing import TraceError
from torchaudit.analyzer.safety import preserved_modes, preserved_rng
from torchaudit.report import ComparisonResult, Config, Location, Status
from torchaudit.errors import OptionError, exception_line

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from torchaudit.analyzer.compare.streaming import Streaming

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
    if opts.against is not None:  # --against RUN: the recording against the live model (--candidate alone sets it)
        out.append("record")
        explicit.add("record")
    if opts.reference is not None or (opts.candidate is not None and opts.against is None):
        if opts.reference is None or opts.candidate is None:
            raise OptionError("--reference and --candidate come together", "pass both, e.g. --reference cpu:float64 --candidate cpu:float16")
        if "custom" not in out:
            out.append("custom")
        explicit.add("custom")
    return list(dict.fromkeys(out)), explicit


@dataclass(frozen=True)
class ComparisonFailure:
    """A comparison that did not give a result, for the rule engine to report (TA903, TA904).

    ``kind`` says whose failure it is: ``"skipped"``, it cannot run here (the reason names the
    flag that fixes it); ``"model"``, the model's own code raised (``location`` is the innermost
    line of the model's code in the traceback); ``"tool"``, torchaudit itself failed."""

    comparison: str
    kind: str  # "skipped", "model" or "tool"
    reason: str  # one line
    explicit: bool  # the user named it (--compare NAME, --reference/--candidate)
    exception: str | None = None  # the exception's type name, for "model" and "tool"
    location: Location | None = None  # "model": where the model's code raised


def run_comparisons(
    model: nn.Module, inputs: ExampleInputs | None, names: Sequence[str] | None, opts: Options
) -> tuple[list[ComparisonResult], list[ComparisonFailure]]:
    """Every requested comparison, each on copies; the results and what failed."""
    chosen, explicit = resolve_names(names, opts)
    results: list[ComparisonResult] = []
    failures: list[ComparisonFailure] = []
    valueless = _valueless(model) if opts.streaming is None else None
    for name in chosen:
        configs = planned(name, model, inputs, opts) or (Config(), Config())
        if inputs is None:
            results.append(skipped(name, NO_INPUTS, *configs))
            continue
        if valueless:
            results.append(skipped(name, f"{valueless} is on the meta device (no values), so nothing could be run", *configs))
            continue
        try:
            with untouched(model):
                results.append(COMPARISONS[name](model, inputs, opts))
        except (Skip, NotStreamed) as why:
            results.append(skipped(name, str(why), *configs))
            if name in explicit:
                failures.append(ComparisonFailure(name, "skipped", str(why), explicit=True))
        except Exception as exc:  # noqa: BLE001 - one comparison failing must not stop the others
            reason = exception_line(exc, limit=300)
            results.append(ComparisonResult(name=name, reference=configs[0], candidate=configs[1], status=Status.ERROR,
                                            skipped_reason=reason))
            where = model_frame(exc)
            failures.append(ComparisonFailure(name, "tool" if where is None else "model", reason, name in explicit,
                                              exception=type(exc).__name__, location=where))
    return results, failures


def model_frame(exc: BaseException) -> Location | None:
    """The innermost line of the model's own code in ``exc``'s traceback, or ``None`` when the
    exception came from torchaudit (or from torch called by torchaudit). The model's code is
    every frame that is not torch's, torchaudit's, the standard library's or fx-generated;
    the user's own files are preferred to installed packages (transformers)."""
    if isinstance(exc, TraceError) and exc.last is not None:  # every tracer failed; the last ran the real forward
        return model_frame(exc.last)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _tool_or_torch(f.filename)]
    if not frames:  # an op of the model's graph, run node by node, raised on its own side's values
        at = getattr(exc, "torchaudit_location", None)
        return at if isinstance(at, Location) else None
    own = [f for f in frames if "site-packages" not in Path(f.filename).parts]
    frame = (own or frames)[-1]
    return Location(frame.filename, frame.lineno)


def _tool_or_torch(filename: str) -> bool:
    if filename.startswith("<"):  # code fx generated for a GraphModule, or exec'd strings
        return True
    path = Path(filename).resolve()
    if any(root == path or root in path.parents for root in _TOOL_AND_TORCH):
        return True
    # the standard library, but not the site-packages folder inside it (transformers is model code)
    third_party = "site-packages" in path.parts or "dist-packages" in path.parts
    return not third_party and _STDLIB in path.parents


def _roots() -> tuple[Path, ...]:
    """Where torch and torchaudit's packages live (found without importing them)."""
    import importlib.util

    roots = [Path(torch.__file__).resolve().parent]
    for package in ("torchaudit", "torchaudit.analyzer", "torchaudit.rules", "torchaudit.reports"):
        spec = importlib.util.find_spec(package)
        if spec is not None:
            roots.extend(Path(p).resolve() for p in spec.submodule_search_locations or [])
    return tuple(roots)


_TOOL_AND_TORCH = _roots()
_STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


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
    """A ``rich`` progress bar on stderr, one task per comparison (only for big models on a TTY).

    With streamed weights it counts the modules whose weights were read, of all that hold
    weights, and the gigabytes read so far."""

    def __init__(self, enabled: bool, streaming: Streaming | None = None) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.streaming = streaming
        self.tasks: dict[str, TaskID] = {}
        self.progress: Progress | None = None

    def __enter__(self) -> "ProgressBar":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.progress = Progress(TextColumn("comparing {task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[unit]}"), console=Console(stderr=True), transient=True)
            self.progress.__enter__()
        return self

    def __call__(self, name: str, done: int, total: int) -> None:
        if self.progress is None:
            return
        unit = "nodes"
        if self.streaming is not None:
            if name not in self.tasks:
                self.streaming.modules_read.clear()
            done, total = len(self.streaming.modules_read), self.streaming.modules_total
            unit = f"modules, {self.streaming.bytes_read / 1e9:.1f} GB read"
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total, unit=unit)
        self.progress.update(self.tasks[name], completed=done, total=total, unit=unit)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.progress is not None:
            self.progress.__exit__(exc_type, exc, tb)


def scan_comparisons(
    model: nn.Module,
    inputs: ExampleInputs | None,
    target: LoadedTarget | None,
    names: Sequence[str] | None,
    *,
    reference: str | None = None,
    candidate: str | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    progress: bool = False,
    graph: ModelGraph | None = None,
    streaming: Streaming | None = None,
    against: str | None = None,
) -> tuple[list[ComparisonResult], list[ComparisonFailure]]:
    """What ``scan`` runs: parse the options, then every requested comparison. ``graph`` is the
    scan's own trace of ``model``: sides in the configuration it was traced in run it."""
    opts = Options(
        seed=seed, atol=atol, rtol=rtol, target=target, graph=graph, streaming=streaming, against=against,
        reference=Config.parse(reference, "--reference") if reference else None,
        candidate=Config.parse(candidate, "--candidate") if candidate else None,
    )
    big = sum(p.numel() for p in model.parameters()) > 1_000_000
    with ProgressBar(progress and big, streaming) as bar:
        opts.progress = bar if bar.enabled else None
        return run_comparisons(model, inputs, names, opts)
