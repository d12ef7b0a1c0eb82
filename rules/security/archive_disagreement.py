from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Location, Severity
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class ArchiveDisagreement(Rule):
    """
    What it finds:
        A zip checkpoint that two zip readers read differently: two members whose names differ
        only in case or not at all, a name with a NUL byte, a local header that names another
        file than the central directory, or offsets that only line up once shifted. Every
        member that could be a pickle is still scanned (TA601), and the file is never loaded,
        with or without `--trust-checkpoint`.

    Why it matters:
        Scanners read zips with Python's `zipfile`; `torch.load` reads them with miniz. When
        the two disagree, a scanner can pass a decoy `data.pkl` while torch unpickles the
        other one: the published way around picklescan and modelscan. No tool writes such an
        archive by accident.

    Example:
        A `torch.save` zip with two `archive/data.pkl` entries: `zipfile` returns the last (a
        clean state dict), miniz finds the first (a payload).

    Fix:
        Do not load the file. Ask for a safetensors file, or a `torch.save` file written again
        from the source.

    Fact:
        torch's reader is `PyTorchStreamReader` (caffe2/serialize/inline_container.cc, on
        miniz): records are found with `mz_zip_reader_locate_file` without
        `MZ_ZIP_FLAG_CASE_SENSITIVE`, names are compared by their full length, the archive
        name is the folder of the first entry. Python's `zipfile` cuts names at a NUL
        (`ZipInfo.__init__`), keeps the last of equal names (`NameToInfo`), shifts offsets by
        the bytes before the archive (`_EndRecData`, `concat`), and refuses a local header
        with another name (`ZipFile.open`).
    """

    code = "TA605"
    severity = Severity.ERROR
    title = "Zip readers disagree about what the checkpoint holds"
    needs = frozenset({"checkpoint"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        ckpt = ctx.checkpoint
        if ckpt is None or not ckpt.archive_problems:
            return
        problems = list(ckpt.archive_problems)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        yield self.finding(
            f"zip readers disagree about this checkpoint: {problems[0]}{more}; the file was not loaded",
            fix="do not load this file: ask for safetensors, or a torch.save file written again from the source",
            module="",
            location=Location(str(ckpt.path)),
            evidence={"problems": problems},
        )
