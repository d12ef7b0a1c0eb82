"""The terminal's block per file of ``torchaudit checkpoint``: format, tensors, every global the
file would import, and what ``torch.load`` would make of it.

Strings from the file (global names, keys) were made printable when the report was built; they
are printed as rich ``Text``, so markup in them stays text.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from torchaudit.report import CheckpointFile, Report
from torchaudit.reports import wording as w

FORMATS = {
    "safetensors": "safetensors (holds no code)",
    "zip": "torch.save zip",
    "legacy": "torch.save legacy (before torch 1.6)",
    "pickle": "a raw pickle",
}
STATUS = {  # how a global is marked, and its style
    "dangerous": ("DANGEROUS", "bold red"),
    "outside_allowlist": ("outside the allowlist", "yellow"),
    "module_class": ("outside the allowlist: an nn.Module class", "yellow"),
    "allowlisted": ("allowlisted", "green"),
}
_LABEL = 13  # width of the row labels
_NAME = 48  # names longer than this push their mark further right


def print_checkpoint_files(report: Report, to_stderr: bool = False) -> None:
    """One block per readable file, a total for several; unreadable files are left to the caller
    (one ``torchaudit: error:`` line each, on stderr)."""
    console = Console(stderr=to_stderr, highlight=False, soft_wrap=True)
    readable = [f for f in report.checkpoint_files if f.error is None]
    for f in readable:
        for line in block(f):
            console.print(line)
        console.print()
    if len(readable) > 1 and any(f.tensors is not None for f in readable):
        console.print(Text(total(readable), style="bold"))
        console.print()


def _row(label: str, value: str | Text, style: str = "") -> Text:
    line = Text("  " + label.ljust(_LABEL))
    line.append(value if isinstance(value, Text) else Text(value, style=style))
    return line


def block(f: CheckpointFile) -> list[Text]:
    """The lines of one readable file's block."""
    lines = [Text(w.display_path(f.path), style="bold")]
    lines.append(_row("format", FORMATS.get(f.format or "", f.format or "")))
    if f.details.get("suffix_mismatch"):  # "named .pt but is a safetensors file": read by its content
        lines.append(_row("file name", f"{f.details['suffix_mismatch']}: read as what it is", "yellow"))
    if f.tensors is None:
        lines.append(_row("wrapper key", "unknown (not unpickled)", "dim"))
    else:
        lines.append(_row("wrapper key", repr(f.wrapper_key) if f.wrapper_key else "none: a bare state dict"))
    if f.producer:
        lines.append(_row("producer", f.producer))
    if f.tensors is None:
        lines.append(_row("tensors", f.not_loaded_reason or "not unpickled", "dim"))
        lines.append(_row("parameters", "not unpickled", "dim"))
    else:
        kinds = ", ".join(f"{dtype} \u00d7{n:,}" for dtype, n in f.dtypes)
        lines.append(_row("tensors", f"{f.tensors:,}" + (f": {kinds}" if kinds else "")))
        lines.append(_row("parameters", f"{f.parameters or 0:,} (values in floating-point tensors)"))
    if f.format == "safetensors":
        lines.append(_row("globals", "none: safetensors has no pickle"))
    else:
        lines.append(_row("globals", f"{w.plural(len(f.imports), 'global')} the pickle would import, by fully qualified name"))
        width = min(_NAME, max((len(g.name) for g in f.imports), default=0))
        for g in f.imports:
            mark, style = STATUS.get(g.status, (g.status, ""))
            line = Text("    " + g.name.ljust(width) + "  ")
            line.append(mark + (f" ({g.why})" if g.why else ""), style=style)
            lines.append(line)
    text, style = verdict(f)
    lines.append(_row("verdict", text, style))
    return lines


def verdict(f: CheckpointFile) -> tuple[str, str]:
    """The file's security verdict in one sentence, and its style."""
    outside = [g for g in f.imports if g.status != "allowlisted"]
    if f.verdict == "dangerous":
        worst = next(g for g in f.imports if g.status == "dangerous")
        more = len([g for g in outside if g.status == "dangerous"]) - 1
        also = f" and {w.plural(more, 'more dangerous global')}" if more else ""
        return (f"DANGEROUS: loading it with weights_only=False would import {worst.name} ({worst.why}){also}; "
                "do not load it", "bold red")
    if f.verdict == "ambiguous":
        problems = f.details.get("archive_problems") or ["?"]
        return (f"AMBIGUOUS: zip readers disagree about this archive ({problems[0]}); "
                "torch may unpickle another member than the one a scanner reads: do not load it", "bold red")
    if f.verdict == "needs_allowlist":
        return (f"torch.load(weights_only=True) refuses it: {w.plural(len(outside), 'global')} outside the allowlist, "
                "none dangerous; --allowlist prints the add_safe_globals call that allows them", "yellow")
    if f.format == "safetensors":
        return "safe: safetensors loads without running code", "green"
    return "torch.load(weights_only=True) loads it: every global it imports is allowlisted", "green"


def total(files: list[CheckpointFile]) -> str:
    """One line over several files: tensors and parameters of those that were unpickled."""
    counted = [f for f in files if f.tensors is not None]
    tensors = sum(f.tensors or 0 for f in counted)
    parameters = sum(f.parameters or 0 for f in counted)
    line = f"{w.plural(len(files), 'file')}: {tensors:,} tensors, {parameters:,} parameters"
    if len(counted) < len(files):
        line += f" ({len(files) - len(counted)} not unpickled, not counted)"
    return line
