"""``torchaudit.check_checkpoint``: checkpoint files alone, no model.

Each file is read as ``scan --checkpoint`` reads it (``analyzer/load/checkpoint.py``: opcodes
first, unpickled only with ``weights_only=True`` and only when every global is allowlisted;
never ``weights_only=False`` here). The result is an ordinary :class:`Report`: the findings of
the rules that need nothing but the checkpoint and the environment (``engine.CHECKPOINT_ALONE``:
TA307, TA310, TA601, TA604, and any later one that declares the same), and one
:class:`CheckpointFile` per file in ``report.checkpoint_files`` (format, tensors, dtypes,
parameters, every global it would import). Every renderer takes it as it takes a scan's.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from torchaudit.analyzer.load.checkpoint_files import CHECKPOINT_SUFFIXES
from torchaudit.errors import CheckpointError, OptionError
from torchaudit.report import GLOBAL_STATUSES, CheckpointFile, Finding, ImportedGlobal, Report, printable
from torchaudit.settings import Settings

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext
    from torchaudit.analyzer.load.checkpoint import Checkpoint

NEEDS_MODEL = "needs a model: torchaudit scan MODEL --checkpoint FILE runs it"


def check_checkpoint(
    paths: str | Path | Sequence[str | Path],
    *,
    settings: Settings | None = None,
    select: Sequence[str] | None = None,
    ignore: Sequence[str] | None = None,
    fail_on: str | None = None,
    command: str | None = None,
) -> Report:
    """Check checkpoint files without a model and return the :class:`Report`.

    ``paths``: one path or several; a directory stands for every checkpoint file directly in it
    (``.safetensors``, ``.bin``, ``.pt``, ``.pth``, ``.ckpt``, sorted by name), e.g. the shards of
    a ``save_pretrained`` folder. A file that cannot be read (missing, truncated, not a
    checkpoint, a directory without one) does not stop the others: its ``CheckpointFile`` carries
    the one-line ``error`` and ``report.exit_code`` is 2. Otherwise the exit code is the gate's,
    as for ``scan``: 1 when a finding is at or above ``fail_on`` (an unsafe global is TA601, an
    error). ``settings`` holds select, ignore and fail-on (keyword arguments win); no other key
    is read, and nothing is ever unpickled with ``weights_only=False``.
    """
    from torchaudit.analyzer.environment import environment
    from torchaudit.rules.config import check_selectors
    from torchaudit.rules.engine import catalogue, run_rules

    s = (settings or Settings()).replace(select=select, ignore=ignore, fail_on=fail_on)
    check_selectors(s.select, s.ignore)
    codes, skipped = rule_codes(s.select, s.ignore)
    env = environment()
    given = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not given:
        raise OptionError("no checkpoint to check", "pass a checkpoint file or a folder of them")
    files: list[CheckpointFile] = []
    findings: list[Finding] = []
    for path, problem in expand(given):
        if problem is not None:
            files.append(CheckpointFile(path=printable(str(path)), error=problem))
            continue
        try:
            ckpt = read(path)
        except CheckpointError as exc:
            files.append(CheckpointFile(path=printable(str(path)), error=printable(exc.one_line())))
            continue
        files.append(facts(ckpt))
        if codes:  # run_rules(select=[]) would run every rule
            found, _ = run_rules(alone(ckpt, env), select=codes)
            findings += found
    return Report(
        target={"spec": printable(" ".join(str(p) for p in given)), "model_class": None, "file": None, "checkpoint": None},
        environment=env,
        graph=None,
        findings=sorted(findings, key=lambda f: -f.severity.rank),  # stable: file by file within a severity
        comparisons=[],
        fail_on=s.fail_on,
        command=command,
        extras={"skipped_rules": skipped} if skipped else {},
        rules=catalogue(),
        checkpoint_files=tuple(files),
    )


def rule_codes(select: Sequence[str], ignore: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The rules to run on a checkpoint alone (those selected that read only what
    ``engine.CHECKPOINT_ALONE`` names, and TA902 so that a rule that raises is reported; empty
    when none is selected), and ``{code: why skipped}`` for the rules ``select`` names that need
    a model: said, not silently dropped."""
    from torchaudit.rules.engine import CHECKPOINT_ALONE, CRASHED, load_rules, reads_only, selected

    rules = load_rules()
    codes = [code for code, cls in rules.items() if reads_only(cls, CHECKPOINT_ALONE) and selected(code, select, ignore)]
    skipped = {code: NEEDS_MODEL for code, cls in rules.items()
               if select and code != CRASHED and selected(code, select, ignore) and not reads_only(cls, CHECKPOINT_ALONE)}
    if codes and selected(CRASHED, select, ignore):
        codes.append(CRASHED)
    return codes, skipped


def expand(given: Sequence[str | Path]) -> Iterator[tuple[Path, str | None]]:
    """Each path to check, and the one-line reason when a directory holds no checkpoint file."""
    for item in given:
        path = Path(item)
        if not path.is_dir():
            yield path, None  # a missing file: the reader says so
            continue
        inside = sorted(p for p in path.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())
        if not inside:
            error = CheckpointError(f"{path} is a directory without a checkpoint file ({', '.join(CHECKPOINT_SUFFIXES)})",
                                    "pass a checkpoint file, or a folder that holds some")
            yield path, printable(error.one_line())
        for p in inside:
            yield p, None


def read(path: Path) -> Checkpoint:
    """The checkpoint at ``path``, never unpickled with ``weights_only=False``; ``CheckpointError``
    when it cannot be read (a file the system refuses to open included)."""
    from torchaudit.analyzer.load.checkpoint import load_checkpoint

    try:
        return load_checkpoint(path, trust=False)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path} ({exc.strerror or exc})", "check the file's permissions") from None


def alone(ckpt: Checkpoint, env: dict[str, Any]) -> AuditContext:
    """The context the rules read: the checkpoint and the environment. ``model`` is an empty
    ``nn.Module`` standing for no model; only rules that declare they read nothing else run on it."""
    import torch.nn as nn

    from torchaudit.analyzer.context import AuditContext

    return AuditContext(model=nn.Module(), target=None, inputs=None, graph=None, environment=env, checkpoint=ckpt)


def facts(ckpt: Checkpoint) -> CheckpointFile:
    """What the report says about one readable file."""
    entries = ckpt.entries
    dtypes: Counter[str] = Counter(str(e.dtype).removeprefix("torch.") for e in (entries or {}).values())
    details = {k: v for k, v in ckpt.describe().items() if k != "strict_load"}  # no model, no strict load
    return CheckpointFile(
        path=printable(str(ckpt.path)),
        format=ckpt.format,
        wrapper_key=printable(ckpt.wrapper_key) if ckpt.wrapper_key is not None else None,
        producer=ckpt.producer,
        tensors=len(entries) if entries is not None else None,
        dtypes=tuple(sorted(dtypes.items(), key=lambda item: (-item[1], item[0]))),
        parameters=sum(math.prod(e.shape) for e in entries.values() if e.dtype.is_floating_point) if entries is not None else None,
        imports=imported(ckpt),
        not_loaded_reason=ckpt.not_loaded_reason,
        details={k: printable(v) if isinstance(v, str) else v for k, v in details.items()},
    )


def imported(ckpt: Checkpoint) -> tuple[ImportedGlobal, ...]:
    """Every global the file's pickles would import, each with where it stands against the
    weights-only allowlist; most severe first, then by name."""
    unsafe = {g.name: g for g in ckpt.unsafe_globals}
    classes = set(ckpt.module_classes)
    out = []
    for name in dict.fromkeys([*ckpt.imports, *unsafe, *classes]):
        g = unsafe.get(name)
        if g is not None:
            out.append(ImportedGlobal(printable(name), "dangerous" if g.dangerous else "outside_allowlist", g.why))
        else:
            out.append(ImportedGlobal(printable(name), "module_class" if name in classes else "allowlisted"))
    return tuple(sorted(out, key=lambda g: (GLOBAL_STATUSES.index(g.status), g.name)))
