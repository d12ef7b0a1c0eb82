"""The rule engine: one registry, one walk, rules that look.

A rule is a :class:`Rule` subclass registered with :func:`register`. It declares what it
wants to see by overriding one or more of:

* ``check_node(node, ctx)``: every :class:`~torchaudit.analyzer.trace.graph.GraphNode`, in order;
* ``check_module(path, module, ctx)``: every ``(path, nn.Module)`` of the module tree;
* ``check_source(node, source, ctx)``: every AST node of the user's source whose type is in
  the rule's ``source_nodes`` (``(ast.Call,)`` by default);
* ``check(ctx)``: once, for whole-model facts (state dict, checkpoint, environment);
* ``finish(ctx)``: once after the walks, for rules that merge what they gathered (a graph node
  and its source line reported as one finding).

The engine walks the graph, the module tree and each source file once and dispatches to the
rules that asked. A rule that raises becomes a ``TA902`` finding and the scan goes on.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping

from torchaudit.errors import exception_line
from torchaudit.report import Finding, Location, RuleInfo, Severity, printable, printable_value

if TYPE_CHECKING:
    import torch.nn as nn

    from torchaudit.analyzer.context import AuditContext
    from torchaudit.analyzer.sources import SourceFile, SourceView
    from torchaudit.analyzer.trace.graph import GraphNode
    from torchaudit.rules.source_model import SourceContext

DOC_HEADINGS = ("What it finds", "Why it matters", "Example", "Fix")
_CODE = re.compile(r"^TA\d{3}$")
_IGNORE = re.compile(r"#\s*torchaudit:\s*ignore\[([A-Za-z0-9_,\s]+)\]")


@dataclass(frozen=True)
class RuleDocs:
    what: str
    why: str
    example: str
    fix: str
    fact: str = ""  # the PyTorch source the rule rests on

    def sections(self) -> list[tuple[str, str]]:
        out = list(zip(DOC_HEADINGS, (self.what, self.why, self.example, self.fix)))
        if self.fact:
            out.append(("Fact", self.fact))
        return out


class Rule:
    """Base class of every rule. Subclasses set ``code``, ``severity``, ``title`` and docs."""

    code: ClassVar[str]
    severity: ClassVar[Severity]
    title: ClassVar[str]
    # evidence the rule reads: "graph", "tree", "source", "checkpoint", "environment", "values",
    # "devices" (where tensors were built), "dynamic"; a scan that lacks one (no graph, --meta without values) skips the rule.
    # `torchaudit checkpoint` has no model: it runs the rules whose needs lie within CHECKPOINT_ALONE, so a
    # checkpoint rule that reads the model (aligns keys with it) says "tree". `torchaudit lint` has only the
    # Python source: it runs the rules whose needs lie within SOURCE_ALONE ({"source"}: such a rule reads the
    # source through analyzer.sources.SourceView and nothing else, though in a scan it may also read the graph)
    needs: ClassVar[frozenset[str]] = frozenset()
    source_nodes: ClassVar[tuple[type[ast.AST], ...]] = (ast.Call,)
    docs: ClassVar[RuleDocs]

    def finding(
        self,
        message: str,
        *,
        fix: str,
        module: str | None = None,
        node: str | None = None,
        location: Location | None = None,
        evidence: dict[str, Any] | None = None,
        severity: Severity | None = None,
    ) -> Finding:
        return Finding(  # names in a message may come from a file (a checkpoint's globals and keys)
            rule=self.code,
            severity=severity or self.severity,
            title=self.title,
            message=printable(message),
            module=printable(module) if module is not None else None,
            node=printable(node) if node is not None else None,
            location=location,
            evidence=printable_value(evidence or {}),
            fix=printable(fix),
        )

    # Overridden by rules; the engine calls only what a rule overrides.
    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        return ()

    def check_node(self, node: GraphNode, ctx: AuditContext) -> Iterable[Finding]:
        return ()

    def check_module(self, path: str, module: nn.Module, ctx: AuditContext) -> Iterable[Finding]:
        return ()

    def check_source(self, node: ast.AST, source: SourceFile, ctx: AuditContext) -> Iterable[Finding]:
        return ()

    def finish(self, ctx: AuditContext) -> Iterable[Finding]:
        """After every walk: findings a rule gathered from several kinds of evidence (a graph
        node and the source line behind it become one finding)."""
        return ()


REGISTRY: dict[str, type[Rule]] = {}

# what a checkpoint file alone offers the rules (`torchaudit checkpoint`): no model, graph or source
CHECKPOINT_ALONE = frozenset({"checkpoint", "values", "environment"})
# what a Python file alone offers the rules (`torchaudit lint`): its AST, no model, graph or torch
SOURCE_ALONE = frozenset({"source"})


def reads_only(rule_cls: type[Rule], evidence: frozenset[str]) -> bool:
    """Whether a rule declares what it reads and all of it lies within ``evidence``. A rule that
    declares nothing reads the model (its tree or its source), so it never does."""
    return bool(rule_cls.needs) and rule_cls.needs <= evidence


def parse_docs(cls: type) -> RuleDocs:
    """Split a rule's docstring into its four required sections (and an optional Fact)."""
    text = (cls.__doc__ or "").strip()
    parts: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        heading = stripped.rstrip(":")
        if heading in DOC_HEADINGS or heading == "Fact":
            current = heading
            parts[current] = []
        elif current is not None:
            parts[current].append(line)
    missing = [h for h in DOC_HEADINGS if not "\n".join(parts.get(h, [])).strip()]
    if missing:
        raise TypeError(f"rule {cls.__name__} docs lack: {', '.join(missing)}")

    def section(name: str) -> str:
        import textwrap

        return textwrap.dedent("\n".join(parts.get(name, []))).strip()

    what, why, example, fix = (section(h) for h in DOC_HEADINGS)
    return RuleDocs(what, why, example, fix, fact=section("Fact"))


def register(cls: type[Rule]) -> type[Rule]:
    """Class decorator: validate a rule and add it to the registry (duplicate codes fail)."""
    code = getattr(cls, "code", None)
    if not code or not _CODE.match(code):
        raise TypeError(f"rule {cls.__name__} has no valid code (TAnnn)")
    if code in REGISTRY and REGISTRY[code] is not cls:
        raise TypeError(f"duplicate rule code {code}: {REGISTRY[code].__name__} and {cls.__name__}")
    if not isinstance(getattr(cls, "severity", None), Severity) or not getattr(cls, "title", ""):
        raise TypeError(f"rule {cls.__name__} needs a severity and a title")
    cls.docs = parse_docs(cls)
    REGISTRY[code] = cls
    return cls


def load_rules() -> dict[str, type[Rule]]:
    """Import every rule module under ``torchaudit.rules`` once; return the registry by code."""
    import torchaudit.rules as package

    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
    return dict(sorted(REGISTRY.items()))


def catalogue() -> dict[str, RuleInfo]:
    """Every rule as reports describe it (code, class name, title, severity, docs): what a
    :class:`Report` carries so that renderers never import the rules."""
    global _CATALOGUE
    if _CATALOGUE is None or len(_CATALOGUE) != len(REGISTRY):
        _CATALOGUE = {
            code: rule_info(cls) for code, cls in load_rules().items()
        }
    return _CATALOGUE


_CATALOGUE: dict[str, RuleInfo] | None = None


def rule_info(cls: type[Rule]) -> RuleInfo:
    """A rule as reports describe it (its docs travel with the report)."""
    return RuleInfo(cls.code, cls.__name__, cls.title, cls.severity, tuple(cls.docs.sections()),
                    lint=reads_only(cls, SOURCE_ALONE))


def matches(code: str, patterns: Iterable[str]) -> bool:
    return any(code.startswith(p.strip().upper()) for p in patterns if p.strip())


def selected(code: str, select: Iterable[str] | None, ignore: Iterable[str] | None) -> bool:
    select = list(select or [])
    if select and not matches(code, select):
        return False
    return not matches(code, ignore or [])


def _overrides(rule: Rule, name: str) -> bool:
    return getattr(type(rule), name) is not getattr(Rule, name)


CRASHED = "TA902"  # the engine's own finding for a rule that raised (rules/tool/untraceable.py documents it)


def _crash(rule: Rule, exc: BaseException) -> Finding:
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({last.filename.rsplit('/', 1)[-1]}:{last.lineno})" if last else ""
    return Finding(
        rule=CRASHED,
        severity=Severity.WARNING,
        title="A rule raised an exception",
        message=f"rule {rule.code} raised {exception_line(exc)}{where}; the scan went on without it",
        evidence={"failed_rule": rule.code, "exception": type(exc).__name__},
        fix="report this as a torchaudit bug with the model that triggers it; --ignore " + rule.code + " silences it",
    )


def _guarded(rule: Rule, results: Iterable[Finding] | None, out: list[Finding], broken: set[str]) -> None:
    if rule.code in broken:
        return
    try:
        out.extend(results or ())
    except Exception as exc:  # noqa: BLE001 - a broken rule must not stop the scan
        broken.add(rule.code)
        out.append(_crash(rule, exc))


def _call(rule: Rule, method: str, out: list[Finding], broken: set[str], *args: object) -> None:
    if rule.code in broken:
        return
    try:
        _guarded(rule, getattr(rule, method)(*args), out, broken)
    except Exception as exc:  # noqa: BLE001
        broken.add(rule.code)
        out.append(_crash(rule, exc))


_MISSING: dict[str, Callable[[AuditContext], bool]] = {
    "graph": lambda ctx: ctx.graph is None,
    "gm": lambda ctx: ctx.graph is None or ctx.graph.gm is None,
    "checkpoint": lambda ctx: ctx.checkpoint is None,
    "values": lambda ctx: ctx.meta,
    "devices": lambda ctx: ctx.meta,  # --meta builds every tensor on one device
    "dynamic": lambda ctx: ctx.comparisons is None,
}


def available(rule_cls: type[Rule], ctx: AuditContext | SourceContext) -> str | None:
    """Why a rule cannot run on this scan, or ``None`` when it can. Lint's context offers the
    source alone: a rule that needs more cannot run there."""
    from torchaudit.rules.source_model import SourceContext

    if isinstance(ctx, SourceContext):
        return None if reads_only(rule_cls, SOURCE_ALONE) else "model"
    for need in sorted(rule_cls.needs):
        check = _MISSING.get(need)
        if check is not None and check(ctx):
            return need
    return None


def run_rules(
    ctx: AuditContext | SourceContext,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    registry: Mapping[str, type[Rule]] | None = None,
) -> tuple[list[Finding], dict[str, str]]:
    """Run every selected rule that can run; return findings and ``{code: why skipped}``.
    ``registry``: the rules to choose from (default: every rule; lint passes the source rules
    alone, whose modules import no torch)."""
    from torchaudit.rules.config import codes

    select, ignore = codes(select, "select"), codes(ignore, "ignore")  # "TA1,TA20" strings or lists
    rules: list[Rule] = []
    skipped: dict[str, str] = {}
    for code, cls in (registry if registry is not None else load_rules()).items():
        if not selected(code, select, ignore):
            continue
        why = available(cls, ctx)
        if why is not None:
            skipped[code] = why
            continue
        rules.append(cls())
    out: list[Finding] = []
    broken: set[str] = set()
    for rule in rules:
        if _overrides(rule, "check"):
            _call(rule, "check", out, broken, ctx)
    node_rules = [r for r in rules if _overrides(r, "check_node")]
    if node_rules and ctx.graph is not None:
        for node in ctx.graph:
            for rule in node_rules:
                _call(rule, "check_node", out, broken, node, ctx)
    module_rules = [r for r in rules if _overrides(r, "check_module")]
    if module_rules and ctx.model is not None:
        for path, module in ctx.model.named_modules():
            for rule in module_rules:
                _call(rule, "check_module", out, broken, path, module, ctx)
    source_rules = [r for r in rules if _overrides(r, "check_source")]
    if source_rules:
        for src in ctx.sources:
            for ast_node in ast.walk(src.tree):
                for rule in source_rules:
                    if isinstance(ast_node, rule.source_nodes):
                        _call(rule, "check_source", out, broken, ast_node, src, ctx)
    for rule in rules:
        if _overrides(rule, "finish"):
            _call(rule, "finish", out, broken, ctx)
    findings = [display(f) for f in out if selected(f.rule, select, ignore) and not suppressed(f, ctx)]
    return dedupe(findings), skipped


def relative_file(file: str) -> str:
    """A path relative to the working directory when it lies below it, else absolute: the real
    path a finding's ``Location.file`` keeps (reports show it with ``report.display_path``)."""
    import os
    from pathlib import Path

    try:
        path = Path(file).resolve()
        return str(path.relative_to(Path(os.getcwd()).resolve()))
    except (OSError, ValueError):
        return file


def display(finding: Finding) -> Finding:
    import dataclasses

    loc = finding.location
    if loc is None or not loc.file:
        return finding
    return dataclasses.replace(finding, location=dataclasses.replace(loc, file=relative_file(loc.file)))


def suppressed(finding: Finding, ctx: SourceView) -> bool:
    """``# torchaudit: ignore[TA101]`` (or ``ignore[TA1]``) on the finding's source line."""
    loc = finding.location
    if loc is None or loc.line is None:
        return False
    from pathlib import Path

    want = Path(loc.file).resolve()
    for src in ctx.sources:
        if src.path.resolve() == want:
            if 0 < loc.line <= len(src.lines):
                m = _IGNORE.search(src.lines[loc.line - 1])
                if m:
                    return matches(finding.rule, m.group(1).split(","))
    return False


def dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str | None, str | None, Location | None, str]] = set()
    out = []
    for f in findings:
        key = (f.rule, f.module, f.node, f.location, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
