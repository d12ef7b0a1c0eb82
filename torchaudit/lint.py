"""``torchaudit.lint``: the source-level rules over Python files, without importing torch.

For pre-commit hooks and editors: no model is built, no input is needed. Each file is parsed
and the rules that read the source alone (``needs`` within ``engine.SOURCE_ALONE``: functional
dropout defaults, literal ``training=True``, ``self.training`` branches, factories without
``device=``, hard-coded devices, NumPy in ``forward``, unsafe ``torch.load``, ``strict=False``
loads, ...) run on it exactly as they run in ``scan``, through the same engine, with one
difference: with no model, each ``nn.Module`` subclass of the file stands for one module,
named by its class (``rules/source_model.py``), so a finding's ``module`` is a class name.

Only the modules in ``rules.manifest.SOURCE_RULES`` are imported; none imports torch (a test
runs this in a fresh interpreter and checks ``sys.modules``).
"""

from __future__ import annotations

import importlib
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from torchaudit.errors import OptionError
from torchaudit.report import Finding, Location, Report, RuleInfo, printable
from torchaudit.settings import Settings

if TYPE_CHECKING:
    from torchaudit.rules.engine import Rule

NEEDS_MODEL = "needs the model: torchaudit scan MODEL runs it"
# folders a directory walk skips (as ruff does): environments, caches, build output
SKIPPED_DIRS = frozenset({"__pycache__", "__pypackages__", "_build", "buck-out", "build", "dist", "node_modules",
                          "site-packages", "venv"})


def lint(
    paths: str | Path | Sequence[str | Path],
    *,
    settings: Settings | None = None,
    select: Sequence[str] | None = None,
    ignore: Sequence[str] | None = None,
    fail_on: str | None = None,
    command: str | None = None,
) -> Report:
    """Run the source-level rules over Python files and folders; return the :class:`Report`.

    ``paths``: files (any name: a file given by name is read as Python) and folders (every
    ``*.py`` below them, skipping hidden folders and ``venv``, ``build``, ``dist``,
    ``site-packages``, ``__pycache__``, ...). A file that cannot be read or parsed does not stop
    the others: its one line is in ``report.source_errors`` and ``report.exit_code`` is 2;
    otherwise the exit code is the gate's, as for ``scan``. ``settings`` holds select, ignore
    and fail-on (keyword arguments win); inline ``# torchaudit: ignore[TA101]`` works as in scan.
    """
    from torchaudit.rules import manifest
    from torchaudit.rules.config import check_selectors

    s = (settings or Settings()).replace(select=select, ignore=ignore, fail_on=fail_on)
    check_selectors(s.select, s.ignore, known=manifest.CODES)
    given = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not given:
        raise OptionError("no file to lint", "pass Python files or folders")
    registry, skipped = source_rules(s.select, s.ignore)
    findings: list[Finding] = []
    errors: list[str] = []
    count = 0  # the files read and parsed
    for path, problem in expand(given):
        if problem is not None:
            errors.append(problem)
            continue
        found, error = lint_file(path, registry, s)
        findings += found
        if error is not None:
            errors.append(error)
        else:
            count += 1
    spec = " ".join(str(p) for p in given)
    if len(spec) > 120:  # pre-commit passes every staged file
        spec = f"{len(given)} paths ({given[0]}, ...)"
    return Report(
        target={"spec": printable(spec), "model_class": None, "file": None, "checkpoint": None},
        environment={"python": platform.python_version()},
        graph=None,
        findings=sorted(findings, key=_order),
        comparisons=[],
        fail_on=s.fail_on,
        command=command,
        extras={"lint": {"files": count, "rules": list(registry)}, **({"skipped_rules": skipped} if skipped else {})},
        rules=catalogue(registry),
        source_errors=tuple(errors),
    )


def source_rules(select: Sequence[str], ignore: Sequence[str]) -> tuple[dict[str, type[Rule]], dict[str, str]]:
    """The selected rules that read the source alone, imported (and nothing else), and
    ``{code: why skipped}`` for the rules ``select`` names that need a model."""
    from torchaudit.rules import manifest
    from torchaudit.rules.engine import CRASHED, REGISTRY, selected

    chosen = {code: module for code, module in manifest.SOURCE_RULES.items() if selected(code, select, ignore)}
    for module in dict.fromkeys(chosen.values()):
        importlib.import_module(module)
    skipped = {code: NEEDS_MODEL for code in manifest.CODES
               if select and code not in manifest.SOURCE_RULES and code != CRASHED and selected(code, select, ignore)}
    return {code: REGISTRY[code] for code in chosen}, skipped


def catalogue(registry: dict[str, type[Rule]]) -> dict[str, RuleInfo]:
    """The docs of the rules lint ran (and of TA902, a rule that raised), for the renderers."""
    from torchaudit.rules import manifest
    from torchaudit.rules.engine import CRASHED, REGISTRY, rule_info

    importlib.import_module(manifest.CRASHED_MODULE)
    classes = {**registry, CRASHED: REGISTRY[CRASHED]}
    return {code: rule_info(cls) for code, cls in sorted(classes.items())}


def lint_file(path: Path, registry: dict[str, type[Rule]], settings: Settings) -> tuple[list[Finding], str | None]:
    """The findings of one file, or the one line that says why it could not be read or parsed."""
    from torchaudit.analyzer.sources import parse_source
    from torchaudit.rules import astutil
    from torchaudit.rules.engine import relative_file, run_rules
    from torchaudit.rules.source_model import SourceContext

    shown = relative_file(str(path))
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        return [], f"cannot read {shown} ({exc.strerror or exc})"
    except UnicodeDecodeError as exc:
        return [], f"cannot read {shown}: not UTF-8 text (byte {exc.start})"
    try:
        src = parse_source(path, text)
    except SyntaxError as exc:
        where = f"{shown}:{exc.lineno}:{exc.offset}" if exc.lineno else shown
        return [], f"cannot parse {where}: {exc.msg}"
    except ValueError as exc:  # a NUL byte
        return [], f"cannot parse {shown}: {exc}"
    if not registry:
        return [], None
    try:
        found, _ = run_rules(SourceContext(src), settings.select, settings.ignore, registry=registry)
    finally:
        astutil.release(src)
    return found, None


def expand(given: Sequence[str | Path]) -> Iterator[tuple[Path, str | None]]:
    """Each file to lint, or the one line that says why a path given is not one."""
    for item in given:
        path = Path(item)
        if path.is_dir():
            yield from ((p, None) for p in python_files(path))
        elif path.exists():
            yield path, None
        else:
            yield path, f"no such file or folder: {printable(str(item))}"


def python_files(folder: Path) -> Iterator[Path]:
    """``*.py`` files below ``folder``, sorted, skipping hidden and environment folders."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        for name in sorted(files):
            if name.endswith(".py"):
                yield Path(root) / name


def _order(f: Finding) -> tuple[str, int, int, str]:
    loc = f.location or Location("")
    return (loc.file, loc.line or 0, loc.column or 0, f.rule)
