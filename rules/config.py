"""Settings from ``[tool.torchaudit]`` in the nearest ``pyproject.toml`` and ``--select``/``--ignore`` parsing.

Command-line flags win over the file; unknown keys are an error (exit 2), so a typo never
silently turns a gate off.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from torchaudit.errors import OptionError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# every scan option of DESIGN.md may live in the file; the rule engine reads the first four
KNOWN_KEYS = {
    "select", "ignore", "fail-on", "baseline",
    "checkpoint", "trust-checkpoint", "compare", "reference", "candidate", "static-only", "html", "json",
    "sarif", "markdown", "meta", "atol", "rtol", "seed", "inputs", "input-shape",
}
_PATTERN = re.compile(r"^TA\d{0,3}$")


@dataclass(frozen=True)
class FileConfig:
    path: Path | None = None  # the pyproject.toml read, if any
    values: dict[str, Any] = field(default_factory=dict)  # parsed TOML, keys normalized to dashes

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def codes(values: Iterable[str] | str | None, option: str) -> list[str]:
    """``["TA1,TA20", "ta3"]`` -> ``["TA1", "TA20", "TA3"]``; anything else is an OptionError."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise OptionError(f"{option} takes rule codes or prefixes, not {value!r}", "write e.g. TA1,TA201")
        for part in value.split(","):
            part = part.strip().upper()
            if not part:
                continue
            if not _PATTERN.match(part):
                raise OptionError(f"{option}: {part!r} is not a rule code or prefix", "use codes like TA101 or prefixes like TA1, TA20")
            out.append(part)
    return out


def find_pyproject(target: str | None) -> Path | None:
    """The nearest ``pyproject.toml`` upward from the target file (from the cwd otherwise)."""
    start = Path.cwd()
    if target:
        candidate = Path(target.split(":", 1)[0] if not Path(target).exists() else target)
        if candidate.suffix == ".py" or candidate.exists():
            start = candidate.resolve().parent
    for folder in (start, *start.parents):
        path = folder / "pyproject.toml"
        if path.is_file():
            return path
    return None


def load_config(target: str | None) -> FileConfig:
    path = find_pyproject(target)
    if path is None:
        return FileConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise OptionError(f"cannot read {path}: {exc}", "fix the TOML syntax of that file") from exc
    section = data.get("tool", {}).get("torchaudit", {})
    if not isinstance(section, dict):
        raise OptionError(f"[tool.torchaudit] in {path} is not a table", "write it as a [tool.torchaudit] section")
    values = {str(k).replace("_", "-"): v for k, v in section.items()}
    unknown = sorted(set(values) - KNOWN_KEYS)
    if unknown:
        raise OptionError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in [tool.torchaudit] of {path}",
            f"use only: {', '.join(sorted(KNOWN_KEYS))}",
        )
    if "baseline" in values and isinstance(values["baseline"], str):
        values["baseline"] = str((path.parent / values["baseline"]))
    return FileConfig(path, values)


@dataclass(frozen=True)
class RuleSettings:
    select: list[str]
    ignore: list[str]
    fail_on: str
    baseline: str | None


def resolve(
    config: FileConfig,
    select: list[str] | None,
    ignore: list[str] | None,
    fail_on: str | None,
    baseline: str | None,
) -> RuleSettings:
    """Flags win over the file, key by key."""
    where = f"[tool.torchaudit] {config.path}" if config.path else ""
    fail = fail_on if fail_on is not None else config.get("fail-on", "error")
    if not isinstance(fail, str):
        raise OptionError(f"fail-on in {where} must be a string", "use error, warning, info or never")
    base = baseline if baseline is not None else config.get("baseline")
    if base is not None and not isinstance(base, str):
        raise OptionError(f"baseline in {where} must be a path", "write baseline = \"torchaudit-baseline.json\"")
    return RuleSettings(
        select=codes(select, "--select") if select else codes(config.get("select"), f"select in {where}"),
        ignore=codes(ignore, "--ignore") if ignore else codes(config.get("ignore"), f"ignore in {where}"),
        fail_on=fail,
        baseline=base,
    )
