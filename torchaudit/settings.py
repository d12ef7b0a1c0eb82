"""One resolved :class:`Settings` for every entry point: defaults, then ``[tool.torchaudit]``
(of the nearest ``pyproject.toml``, or of ``--config PATH``), then the command line.

Every key of the file works exactly like the flag of the same name, in the same types (a
string; a list where the flag repeats). Relative paths in the file are relative to the file.
Everything here is cheap and imports no torch: bad values are exit 2 before the model loads.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from torchaudit.errors import CheckpointError, OptionError
from torchaudit.report import FAIL_ON_CHOICES as FAIL_ON, Config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

COMPARISON_NAMES = ("auto", "dtype", "device", "reload", "mode", "determinism", "batch", "record")  # a test checks the registry
OUTPUTS = ("json", "html", "markdown", "sarif")  # report paths; "-" is stdout
OUTPUT_FORMATS = ("text", "concise", "json", "github")  # what the terminal shows (ruff's --output-format)
_CODE = re.compile(r"^TA\d{0,3}$")

# key -> kind: "str", "path" (relative to the file), "inputs" (path.py:fn), "bool", "float", "int",
# "codes" (a list or a comma list of rule codes), "names" (a list or comma list), "shapes" (a list)
KEYS: dict[str, str] = {
    "inputs": "inputs", "input-shape": "shapes", "checkpoint": "path", "trust-checkpoint": "bool", "meta": "bool",
    "stream-weights": "bool",
    "compare": "names", "reference": "str", "candidate": "str", "static-only": "bool",
    "atol": "float", "rtol": "float", "seed": "int",
    "select": "codes", "ignore": "codes", "fail-on": "str", "baseline": "path",
    "json": "path", "html": "path", "markdown": "path", "sarif": "path", "output-format": "str",
    "against": "path",
}


@dataclass(frozen=True)
class Settings:
    """Everything a scan (or diff) reads; field names are the keys with underscores."""

    inputs: str | None = None
    input_shape: tuple[str, ...] = ()
    checkpoint: str | None = None
    trust_checkpoint: bool = False
    meta: bool = False
    stream_weights: bool | None = None  # None: stream when the weights exceed half of the available memory
    compare: tuple[str, ...] = ("auto",)
    reference: str | None = None
    candidate: str | None = None
    static_only: bool = False
    atol: float | None = None
    rtol: float | None = None
    seed: int = 0
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    fail_on: str = "error"
    baseline: str | None = None
    json: str | None = None
    html: str | None = None
    markdown: str | None = None
    sarif: str | None = None
    output_format: str = "text"
    config: str | None = None  # the file the settings came from, if any
    against: str | None = None  # a recording folder (torchaudit record): the reference of the record comparison

    def replace(self, **changes: Any) -> Settings:
        """These settings with ``changes`` (``None`` values are left out: "not given"), checked."""
        given = {k.replace("-", "_"): v for k, v in changes.items() if v is not None}
        for key, value in list(given.items()):
            if key in ("input_shape", "compare", "select", "ignore") and not isinstance(value, tuple):
                given[key] = (value,) if isinstance(value, str) else tuple(value)
        return dataclasses.replace(self, **given).checked()

    def checked(self, where: str = "", *, whole: bool = True) -> Settings:
        """Normalized (codes upper case, choices lower case, comma lists split) and validated;
        ``whole=False`` (the file alone, before the flags) leaves out the checks across keys."""
        opt = (lambda key: f"{key} in {where}") if where else (lambda key: f"--{key}")
        fail_on = self.fail_on.strip().lower() if isinstance(self.fail_on, str) else self.fail_on
        if fail_on not in FAIL_ON:
            raise OptionError(f"{opt('fail-on')} {self.fail_on!r} is not one of {', '.join(FAIL_ON)}", "pick one of those")
        compare = tuple(n.strip().lower() for v in self.compare for n in str(v).split(",") if n.strip()) or ("auto",)
        for name in compare:
            if name not in COMPARISON_NAMES:
                raise OptionError(f"unknown comparison {name!r} in {opt('compare')}",
                                  f"use auto or one of {', '.join(COMPARISON_NAMES[1:])} (a comma list or repeated)")
        for key, tol in (("atol", self.atol), ("rtol", self.rtol)):
            if tol is not None and not (tol >= 0 and tol != float("inf")):
                raise OptionError(f"{opt(key)} {tol} is not a tolerance", "use a number >= 0, e.g. 1e-5")
        for shape in self.input_shape:
            check_shape(shape, opt("input-shape"))
        for key, cfg in (("reference", self.reference), ("candidate", self.candidate)):
            if cfg is not None:
                Config.parse(cfg, opt(key))  # the syntax; comparisons read it the same way
        if whole and not (self.against and self.reference is None):  # --against: --candidate alone sets the live side
            _check_paired(self.reference, self.candidate, opt)
        output_format = self.output_format.strip().lower() if isinstance(self.output_format, str) else self.output_format
        if output_format not in OUTPUT_FORMATS:
            raise OptionError(f"{opt('output-format')} {self.output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}",
                              "pick one of those")
        stdout = [k for k in OUTPUTS if getattr(self, k) == "-"] + (["output-format json"] if output_format == "json" else [])
        if whole and len(stdout) > 1:
            raise OptionError(f"{' and '.join('--' + k for k in stdout)} both write to stdout",
                              "send at most one report to stdout, the others to files")
        return dataclasses.replace(
            self, fail_on=fail_on, compare=compare, output_format=output_format,
            reference=self.reference.strip().lower() if self.reference else self.reference,
            candidate=self.candidate.strip().lower() if self.candidate else self.candidate,
            select=tuple(codes(self.select, opt("select"))), ignore=tuple(codes(self.ignore, opt("ignore"))),
        )

    @property
    def stdout_report(self) -> str | None:
        """The report that goes to stdout (``-``), if any: then everything else goes to stderr."""
        return next((k for k in OUTPUTS if getattr(self, k) == "-"), "json" if self.output_format == "json" else None)


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
            if not _CODE.match(part):
                raise OptionError(f"{option}: {part!r} is not a rule code or prefix", "use codes like TA101 or prefixes like TA1, TA20")
            out.append(part)
    return out


def check_shape(text: str, option: str = "--input-shape") -> None:
    """The syntax of ``1,3,224,224`` or ``8,128:int64`` (the dtype is checked where tensors are made)."""
    shape, _, _ = text.partition(":")
    fix = "write it as comma-separated sizes with an optional dtype, e.g. --input-shape 1,3,224,224 or 8,128:int64"
    if re.search(r"\d\s+\d", shape):
        raise OptionError(f"malformed {option} {text!r}: sizes separated by spaces", "use commas, e.g. --input-shape 4,1,28,28")
    parts = [p.strip() for p in shape.split(",")]
    if not all(p.isdigit() for p in parts):
        raise OptionError(f"malformed {option} {text!r}", fix)


# --- the file ---------------------------------------------------------------------------------


def find_pyproject(target: str | None) -> Path | None:
    """The nearest ``pyproject.toml`` with a ``[tool.torchaudit]`` table, upward from the target
    file (from the cwd otherwise)."""
    start = Path.cwd()
    if target:
        candidate = Path(target.split(":", 1)[0] if not Path(target).exists() else target)
        if candidate.suffix == ".py" or candidate.exists():
            start = candidate.resolve().parent
    for folder in (start, *start.parents):
        path = folder / "pyproject.toml"
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                return path  # read_file says what is wrong with it
            if "torchaudit" in data.get("tool", {}):
                return path
    return None


def read_file(path: Path) -> dict[str, Any]:
    """``[tool.torchaudit]`` of ``path`` as Settings fields (relative paths made relative to the file)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise OptionError(f"cannot read {path}: {exc}", "fix the TOML syntax of that file") from exc
    # a pyproject.toml (or any file with a [tool] table) keeps its settings under [tool.torchaudit];
    # another TOML file given to --config may hold the keys at the top level
    nested = path.name == "pyproject.toml" or "tool" in data
    section = data.get("tool", {}).get("torchaudit", {}) if nested else data
    if not isinstance(section, dict):
        raise OptionError(f"[tool.torchaudit] in {path} is not a table", "write it as a [tool.torchaudit] section")
    values = {str(k).replace("_", "-"): v for k, v in section.items()}
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise OptionError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in [tool.torchaudit] of {path}",
            f"use only: {', '.join(sorted(KEYS))}",
        )
    out: dict[str, Any] = {}
    for key, value in values.items():
        out[key.replace("-", "_")] = _typed(key, value, path)
    return out


def _typed(key: str, value: Any, path: Path) -> Any:
    kind = KEYS[key]
    where = f"{key} in [tool.torchaudit] of {path}"
    base = path.parent
    if kind == "bool":
        if not isinstance(value, bool):
            raise OptionError(f"{where} must be true or false", f"write {key} = true")
        return value
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise OptionError(f"{where} must be an integer", f"write e.g. {key} = 0")
        return value
    if kind == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise OptionError(f"{where} must be a number", f"write e.g. {key} = 1e-5")
        return float(value)
    if kind in ("codes", "names", "shapes"):
        items = [value] if isinstance(value, str) and kind != "shapes" else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            example = '["1,3,224,224"]' if kind == "shapes" else '["TA1", "TA201"]' if kind == "codes" else '["dtype", "mode"]'
            raise OptionError(f"{where} must be a list of strings", f"write e.g. {key} = {example}")
        return tuple(items)
    if not isinstance(value, str):
        raise OptionError(f"{where} must be a string", f'write e.g. {key} = "..."')
    if kind == "path" and value != "-":
        return str(base / value) if not Path(value).is_absolute() else value
    if kind == "inputs":
        file, sep, fn = value.rpartition(":")
        if sep and file.endswith(".py") and not Path(file).is_absolute():
            return f"{base / file}:{fn}"
    return value


def resolve(target: str | None, flags: Mapping[str, Any], *, config: str | None = None, isolated: bool = False) -> Settings:
    """Defaults, then the file (``config``, else the nearest pyproject.toml unless ``isolated``),
    then ``flags`` (``None`` = not given), checked."""
    if config is not None and isolated:
        raise OptionError("--config and --isolated exclude each other", "pass one of them")
    path: Path | None = None
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise OptionError(f"--config file not found: {config}", "pass the path of a pyproject.toml or a TOML file")
    elif not isolated:
        path = find_pyproject(target)
    base = Settings()
    if path is not None:
        base = dataclasses.replace(base, config=str(path), **read_file(path)).checked(f"[tool.torchaudit] of {path}", whole=False)
    _check_pair(base, flags, path)
    return base.replace(**flags)


def _check_pair(base: Settings, flags: Mapping[str, Any], path: Path | None) -> None:
    """``reference`` and ``candidate`` come together; the error names where the one given was set."""
    given = {k: flags.get(k) if flags.get(k) is not None else getattr(base, k) for k in ("reference", "candidate", "against")}
    if given["against"] and given["reference"] is None:
        return
    _check_paired(given["reference"], given["candidate"],
                  lambda key: f"--{key}" if flags.get(key) is not None else f"{key} in [tool.torchaudit] of {path}")


def _check_paired(reference: str | None, candidate: str | None, where: Callable[[str], str]) -> None:
    if (reference is None) == (candidate is None):
        return
    key, other = ("reference", "candidate") if reference is not None else ("candidate", "reference")
    raise OptionError(f"{where(key)} is set without {other}: the two come together",
                      f"set {other} too (--{other} {_EXAMPLE[other]}, or {other} = \"{_EXAMPLE[other]}\" in [tool.torchaudit])")


_EXAMPLE = {"reference": "cpu:float64", "candidate": "cpu:float16"}


def shown(path: str) -> str:
    """``path`` relative to the cwd where it is below it, else as given."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    except ValueError:  # another drive on Windows
        return path


def check_paths(settings: Settings, target: str | None = None) -> None:
    """Input files exist and every output path can be written (missing folders are made):
    exit 2 before the model is imported."""
    if settings.checkpoint is not None and not Path(settings.checkpoint).exists():  # a folder: the loader says more
        raise CheckpointError(f"checkpoint not found: {settings.checkpoint}", "check the --checkpoint path")
    if settings.inputs:
        file, sep, fn = settings.inputs.rpartition(":")
        if not sep or not fn:
            raise OptionError(f"--inputs {settings.inputs!r} names no function", "write it as path.py:function")
        if file.endswith(".py") and not Path(file).is_file():
            raise OptionError(f"--inputs file not found: {file}", "check the path in --inputs path.py:function")
    if settings.against is not None and not Path(settings.against).is_dir():
        raise OptionError(f"--against {settings.against}: not found (a recording is a folder)",
                          "pass a folder written by 'torchaudit record'")
    if settings.baseline is not None and not Path(settings.baseline).is_file():
        raise OptionError(f"baseline file not found: {settings.baseline}",
                          "write one with --write-baseline PATH, or fix the path")
    for key in OUTPUTS:
        check_output(getattr(settings, key), f"--{key}")


def check_output(path: str | None, flag: str) -> None:
    """An output path that can be written: its folder is made if missing; a folder, or a place
    that cannot be written, is exit 2."""
    if path is None or path == "-":
        return
    p = Path(path)
    fix = "pass a file path in a folder you can write to"
    if p.is_dir():
        raise OptionError(f"{flag} {path}: is a directory", fix)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OptionError(f"{flag} {path}: cannot create its folder ({exc.strerror or exc})", fix) from exc
    if (p.exists() and not os.access(p, os.W_OK)) or not os.access(p.parent, os.W_OK | os.X_OK):
        raise OptionError(f"{flag} {path}: cannot write there (permission denied)", fix)
