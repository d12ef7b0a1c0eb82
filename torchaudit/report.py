"""The typed data that flows between stages: findings, comparisons and the report.

Every renderer (terminal, JSON, HTML, SARIF, Markdown) reads a :class:`Report` and nothing
else, so they all tell the same story.
"""

from __future__ import annotations

import enum
import os
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

SCHEMA_VERSION = 1


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 3, "warning": 2, "info": 1}[self.value]


class Status(str, enum.Enum):
    MATCHED = "matched"
    DIVERGED = "diverged"
    ACCUMULATED = "accumulated"  # the outputs are outside tolerance and no single node is to blame
    SKIPPED = "skipped"
    ERROR = "error"


_PACKAGE_DIRS = ("site-packages", "dist-packages")


def _stdlib_dirs() -> tuple[str, ...]:
    dirs = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib")}
    dirs.add(os.path.dirname(os.__file__))
    return tuple(sorted((os.path.abspath(d) for d in dirs if d), key=len, reverse=True))


_STDLIB_DIRS = _stdlib_dirs()


_CONTROL = dict.fromkeys([*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)])
MAX_TEXT = 2000  # characters of one string from a file that a report shows


def printable(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` safe to print anywhere: control characters (an ANSI escape that moves the cursor
    or paints a green "PASS") and lone surrogates written as escapes, and cut at ``limit``
    characters. Strings that come from a file (a checkpoint's global names and keys) reach
    every renderer through this."""
    if text.isprintable() and len(text) <= limit:
        return text
    out = "".join(
        repr(ch)[1:-1] if ord(ch) in _CONTROL or 0xD800 <= ord(ch) <= 0xDFFF else ch
        for ch in text[:limit]
    )
    return out + (f"... ({len(text) - limit:,} more characters)" if len(text) > limit else "")


def printable_value(value: Any) -> Any:
    """:func:`printable` through strings, lists, tuples and dict keys and values."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_value(k): printable_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(printable_value(v) for v in value)
    return value


def display_path(path: str) -> str:
    """How every report and message shows a source file (no torch import, so ``lint`` may use it).

    A third-party file (anything under a ``site-packages`` or ``dist-packages`` folder) or a
    standard-library one is shown from its package: ``transformers/models/bert/modeling_bert.py``;
    a file below the working directory relative to it: ``examples/model.py``; anything else
    (``<string>``, a file elsewhere) as given. ``Location.file`` keeps the real path, for tools
    that open it (SARIF's artifact locations, the HTML source snippets).
    """
    if not path or path.startswith("<"):
        return path
    full = os.path.abspath(path)
    parts = full.split(os.sep)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in _PACKAGE_DIRS and i + 1 < len(parts):
            return "/".join(parts[i + 1 :])
    try:
        rel = os.path.relpath(full)
    except ValueError:  # another drive on Windows
        rel = ""
    if rel and not rel.startswith(".."):
        return rel.replace(os.sep, "/")
    for root in _STDLIB_DIRS:
        if full.startswith(root + os.sep):
            return full[len(root) + 1 :].replace(os.sep, "/")
    if sys.platform != "win32":  # a symlinked working directory: compare resolved paths too
        real, cwd = os.path.realpath(full), os.path.realpath(os.getcwd())
        if real.startswith(cwd + os.sep):
            return real[len(cwd) + 1 :]
    return path


@dataclass(frozen=True)
class Location:
    file: str  # the real path (relative to the working directory when below it, else absolute)
    line: int | None = None
    column: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column}

    def __str__(self) -> str:
        """As reports and messages show it: ``examples/model.py:18``,
        ``transformers/models/bert/modeling_bert.py:187`` (see :func:`display_path`)."""
        if self.line is None:
            return display_path(self.file)
        return f"{display_path(self.file)}:{self.line}"


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    title: str
    message: str
    module: str | None = None
    node: str | None = None
    location: Location | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "title": self.title,
            "message": self.message,
            "module": self.module,
            "node": self.node,
            "location": self.location.to_dict() if self.location else None,
            "evidence": self.evidence,
            "fix": self.fix,
        }


# dtype names a configuration may use, by the torch dtype name each stands for
DTYPE_ALIASES = {
    "float64": "float64", "double": "float64", "fp64": "float64",
    "float32": "float32", "float": "float32", "fp32": "float32",
    "float16": "float16", "half": "float16", "fp16": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
}


@dataclass(frozen=True)
class Config:
    """One side of a comparison: where and how the graph runs."""

    device: str = "cpu"
    dtype: str = "float32"
    mode: str = "eval"

    @classmethod
    def parse(cls, text: str, flag: str) -> Config:
        """``device:dtype[:mode]`` (any case, dtype aliases such as ``fp16``), e.g. ``cpu:float64:eval``;
        a malformed one is an ``OptionError`` naming ``flag``. No torch import: the command line
        checks it before the model is loaded."""
        from torchaudit.errors import OptionError

        parts = [p.strip().lower() for p in text.split(":")]
        if len(parts) not in (2, 3):
            raise OptionError(f"malformed {flag} {text!r}", f"write {flag} as device:dtype[:mode], e.g. cpu:float64:eval")
        device, dtype = parts[0], parts[1]
        mode = parts[2] if len(parts) == 3 else "eval"
        if device != "cpu" and not device.startswith("cuda"):
            raise OptionError(f"unknown device {device!r} in {flag} {text!r}", "use cpu or cuda[:N]")
        if dtype not in DTYPE_ALIASES:
            raise OptionError(f"unknown dtype {dtype!r} in {flag} {text!r}", f"use one of {', '.join(sorted(DTYPE_ALIASES))}")
        if mode not in ("eval", "train"):
            raise OptionError(f"unknown mode {mode!r} in {flag} {text!r}", "use eval or train")
        return cls(device, DTYPE_ALIASES[dtype], mode)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "dtype": self.dtype, "mode": self.mode}

    def __str__(self) -> str:
        return f"{self.device}:{self.dtype}:{self.mode}"


@dataclass(frozen=True)
class ErrorStats:
    max_abs: float = 0.0
    max_rel: float = 0.0
    mismatch_fraction: float = 0.0
    cosine: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "mismatch_fraction": self.mismatch_fraction,
            "cosine": self.cosine,
        }


@dataclass(frozen=True)
class NodeComparison:
    node: str
    module: str | None
    op: str
    total: ErrorStats
    local: ErrorStats
    inherited: ErrorStats
    diverged: bool = False
    location: Location | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "module": self.module,
            "op": self.op,
            **self.total.to_dict(),
            "local_max_abs": self.local.max_abs,
            "local_max_rel": self.local.max_rel,
            "inherited_max_abs": self.inherited.max_abs,
            "inherited_max_rel": self.inherited.max_rel,
            "diverged": self.diverged,
        }


@dataclass(frozen=True)
class Divergence:
    """The node a comparison blames, with its own and its inherited error."""

    node: str
    module: str | None
    op: str
    local: ErrorStats
    inherited: ErrorStats
    total: ErrorStats
    location: Location | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "module": self.module,
            "op": self.op,
            "local": {"max_abs": self.local.max_abs, "max_rel": self.local.max_rel},
            "inherited": {"max_abs": self.inherited.max_abs, "max_rel": self.inherited.max_rel},
            "total": {"max_abs": self.total.max_abs, "max_rel": self.total.max_rel},
            "location": self.location.to_dict() if self.location else None,
        }


@dataclass(frozen=True)
class Contribution:
    """A node that adds much of an accumulated error: its own (local) error, or the error its
    input gained since the compared nodes that fed it (``entered_in``: the module whose own
    code between them, not compared node by node, added it). ``added`` is relative to the
    node's output norm (``||error|| / ||reference||``)."""

    node: str
    module: str | None
    op: str
    added: float
    entered_in: str | None = None
    after: str | None = None  # with ``entered_in``: the compared node after which it entered
    location: Location | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "module": self.module,
            "op": self.op,
            "added": self.added,
            "entered_in": self.entered_in,
            "after": self.after,
            "location": self.location.to_dict() if self.location else None,
        }


@dataclass(frozen=True)
class StateDifference:
    name: str
    kind: str  # "parameter", "buffer", "non_persistent_buffer", "tensor_attribute", "python_attribute"
    reference: str
    candidate: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "reference": self.reference, "candidate": self.candidate}


# the note the lockstep engine records for a node the reference could not run (one sample
# alone through a batch-statistics op): analyzer/compare/lockstep.py, _record_unrunnable
UNRUNNABLE_NOTE = "{node}: the reference could not run it ({why})"


@dataclass(frozen=True)
class ComparisonResult:
    name: str
    reference: Config
    candidate: Config
    status: Status
    skipped_reason: str | None = None
    tolerance: dict[str, float] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    first_divergence: Divergence | None = None
    first_nonfinite: dict[str, Any] | None = None
    state_diff: tuple[StateDifference, ...] = ()
    nodes: tuple[NodeComparison, ...] = ()
    notes: tuple[str, ...] = ()  # what the engine could not do at some node (a reference op that could not run)
    contributors: tuple[Contribution, ...] = ()  # status "accumulated": the nodes that add most of the error

    @property
    def expected_difference(self) -> bool:
        """Whether the two configurations are meant to give different outputs (eval against
        train: the ``mode`` comparison, or a custom pair whose modes differ), so that a
        divergence is what the comparison looks for, not a failure. ``status`` stays
        ``diverged``; renderers word such a result "differs as expected"."""
        return self.reference.mode != self.candidate.mode

    def could_not_run(self, node: str) -> str | None:
        """Why the reference could not run ``node`` (``None`` when it ran). Such a node is
        recorded as diverged with placeholder numbers (no error was measured), and the
        engine's note says why (``analyzer/compare/lockstep.py``, ``_record_unrunnable``)."""
        head = UNRUNNABLE_NOTE.format(node=node, why="")[:-1]
        for note in self.notes:
            if note.startswith(head) and note.endswith(")"):
                return note[len(head):-1]
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reference": self.reference.to_dict(),
            "candidate": self.candidate.to_dict(),
            "status": self.status.value,
            "expected_difference": self.expected_difference,
            "skipped_reason": self.skipped_reason,
            "tolerance": self.tolerance,
            "output": self.output,
            "first_divergence": self.first_divergence.to_dict() if self.first_divergence else None,
            "state_diff": [d.to_dict() for d in self.state_diff],
            "nodes": [n.to_dict() for n in self.nodes],
            "first_nonfinite": self.first_nonfinite,
            "notes": list(self.notes),
            "contributors": [c.to_dict() for c in self.contributors],
        }


@dataclass(frozen=True)
class GraphInfo:
    tracer: str
    nodes: int
    modules: int
    parameters: int
    buffers: int
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracer": self.tracer,
            "nodes": self.nodes,
            "modules": self.modules,
            "parameters": self.parameters,
            "buffers": self.buffers,
        }


@dataclass(frozen=True)
class OutlineNode:
    """One node of the traced graph as reports draw it: what it is, which module made it, and
    the nodes it reads (the graph view collapses these by module, reports/graph_view.py)."""

    name: str
    op: str  # placeholder, call_function, call_method, call_module, get_attr, output
    op_name: str  # a short label: linear, softmax, Dropout...
    module: str  # dotted path of the module whose forward made it ("" = the root)
    module_type: str | None = None  # qualified class name of that module
    inputs: tuple[str, ...] = ()  # names of the nodes it reads
    dtype: str | None = None  # of its (first) output tensor: ``float32``, ``int64``, ``bool``


def exact_dtype(dtype: str | None) -> bool:
    """An integer or boolean dtype as torch spells it without ``torch.`` (``int64``, ``uint8``,
    ``bool``): its values are compared exactly, so it has no relative error and no cosine."""
    return dtype is not None and (dtype == "bool" or dtype.lstrip("q").startswith(("int", "uint")))


@dataclass(frozen=True)
class Summary:
    errors: int
    warnings: int
    infos: int
    verdict: str  # "pass" or "fail"
    fail_on: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "errors": self.errors,
            "warnings": self.warnings,
            "infos": self.infos,
            "verdict": self.verdict,
            "fail_on": self.fail_on,
        }


FAIL_ON_CHOICES = ("error", "warning", "info", "never")


def summarize(findings: tuple[Finding, ...] | list[Finding], fail_on: str) -> Summary:
    counts = {s: 0 for s in Severity}
    for f in findings:
        counts[f.severity] += 1
    threshold = {"error": 3, "warning": 2, "info": 1, "never": 99}[fail_on]
    failed = any(f.severity.rank >= threshold for f in findings)
    return Summary(
        errors=counts[Severity.ERROR],
        warnings=counts[Severity.WARNING],
        infos=counts[Severity.INFO],
        verdict="fail" if failed else "pass",
        fail_on=fail_on,
    )


@dataclass(frozen=True)
class RuleInfo:
    """A rule as reports describe it: its docs travel with the report, so renderers never
    import the rule engine."""

    code: str
    name: str  # the rule's class name, e.g. FunctionalDropoutDefault
    title: str
    severity: Severity
    sections: tuple[tuple[str, str], ...] = ()  # (heading, text): What it finds, Why it matters, Example, Fix[, Fact]
    lint: bool = False  # reads the Python source alone, so `torchaudit lint` runs it too

    @property
    def what(self) -> str:
        return dict(self.sections).get("What it finds", "")


# where a global a checkpoint's pickle would import stands against torch's weights-only allowlist,
# most severe first: outside it, torch.load(weights_only=True) refuses the file
GLOBAL_STATUSES = ("dangerous", "outside_allowlist", "module_class", "allowlisted")


@dataclass(frozen=True)
class ImportedGlobal:
    """A global a checkpoint's pickle would import, by fully qualified name (``posix.system``)."""

    name: str
    status: str  # one of GLOBAL_STATUSES; "module_class": an nn.Module class (a whole pickled module, TA310)
    why: str = ""  # "dangerous": what importing it allows

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "why": self.why}


@dataclass(frozen=True)
class CheckpointFile:
    """One file of ``torchaudit checkpoint``: what it holds and every global loading it would
    import; ``error`` (one line) when it could not be read. Strings from the file are printable."""

    path: str
    format: str | None = None  # "safetensors", "zip", "legacy", "pickle"; None when unreadable
    wrapper_key: str | None = None
    producer: str | None = None
    tensors: int | None = None  # None: not unpickled (or unreadable)
    dtypes: tuple[tuple[str, int], ...] = ()  # (dtype, tensors of it), most common first
    parameters: int | None = None  # values in floating-point tensors (a state dict does not tell parameters from buffers)
    imports: tuple[ImportedGlobal, ...] = ()  # most severe first, then by name
    not_loaded_reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # the reader's own description (Checkpoint.describe())
    error: str | None = None

    @property
    def verdict(self) -> str:
        """``unreadable``, ``dangerous``, ``ambiguous`` (zip readers disagree about the archive,
        TA605), ``needs_allowlist`` (globals outside the allowlist, none dangerous:
        ``add_safe_globals`` lets ``torch.load(weights_only=True)`` load it) or ``loads``."""
        if self.error is not None:
            return "unreadable"
        statuses = {g.status for g in self.imports}
        if "dangerous" in statuses:
            return "dangerous"
        if self.details.get("archive_problems"):
            return "ambiguous"
        return "needs_allowlist" if statuses - {"allowlisted"} else "loads"

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.details,
            "path": self.path,
            "format": self.format,
            "wrapper_key": self.wrapper_key,
            "producer": self.producer,
            "tensors": self.tensors,
            "dtypes": dict(self.dtypes),
            "parameters": self.parameters,
            "imports": [g.to_dict() for g in self.imports],
            "not_loaded_reason": self.not_loaded_reason,
            "verdict": self.verdict,
            "error": self.error,
        }


@dataclass
class Report:
    """Everything one scan found. Renderers read this and nothing else."""

    target: dict[str, Any]
    environment: dict[str, Any]
    graph: GraphInfo | None
    findings: list[Finding]
    comparisons: list[ComparisonResult]
    fail_on: str = "error"
    command: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    graph_outline: tuple[OutlineNode, ...] = ()  # the traced graph, node by node, for the graph view
    module_types: Mapping[str, str] = field(default_factory=dict)  # qualified class name of each submodule, by dotted path
    rules: Mapping[str, RuleInfo] = field(default_factory=dict)  # the rule catalogue, by code (docs for renderers)
    checkpoint_files: tuple[CheckpointFile, ...] = ()  # `torchaudit checkpoint`: each file checked, in order
    source_errors: tuple[str, ...] = ()  # `torchaudit lint`: one line per file that could not be read or parsed

    @property
    def summary(self) -> Summary:
        return summarize(self.findings, self.fail_on)

    @property
    def unreadable(self) -> tuple[CheckpointFile, ...]:
        """The files that could not be read (``torchaudit checkpoint``): they make the exit code 2."""
        return tuple(f for f in self.checkpoint_files if f.error is not None)

    @property
    def exit_code(self) -> int:
        """2 when a file could not be read, else 1 when the gate failed, else 0: the worst wins."""
        if self.unreadable or self.source_errors:
            return 2
        return 1 if self.summary.verdict == "fail" else 0

    def to_dict(self) -> dict[str, Any]:
        from torchaudit import __version__

        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "torchaudit", "version": __version__},
            "target": self.target,
            "environment": self.environment,
            "graph": self.graph.to_dict() if self.graph else None,
            "findings": [f.to_dict() for f in self.findings],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "summary": self.summary.to_dict(),
        }
        if self.checkpoint_files:
            data["checkpoint_files"] = [f.to_dict() for f in self.checkpoint_files]
        if self.source_errors:
            data["source_errors"] = list(self.source_errors)
        data.update(self.extras)
        return data

    def write(self, path: str | Path, format: str | None = None) -> None:
        """Write this report to ``path`` (``"-"`` = stdout) as JSON, HTML, Markdown or SARIF.

        The format comes from the suffix (``.json``, ``.html``, ``.md``/``.markdown``,
        ``.sarif``/``.sarif.json``) unless ``format`` (``json``, ``html``, ``markdown``,
        ``sarif``) says otherwise; an unknown suffix raises ``OptionError`` naming the choices.
        Missing parent folders are created; a failed write raises ``ReportWriteError``.
        """
        from torchaudit.reports.files import write_report  # reports/ imports this module: import late

        write_report(self, path, format)


def flat_environment(env: Mapping[str, Any]) -> dict[str, Any]:
    """An environment with its sections flattened: ``{"flags": {"deterministic": x}}`` becomes
    ``{"flags.deterministic": x}`` (how environment differences name their keys)."""
    out: dict[str, Any] = {}
    for key, value in env.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out
