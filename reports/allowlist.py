"""``torchaudit checkpoint --allowlist``: the Python that lets ``torch.load(weights_only=True)``
load the checked files, ready to paste before the load.

It allows the globals outside torch's weights-only allowlist that are not dangerous, by the
fully qualified name the pickle uses, and never a dangerous one; a file that imports a dangerous
global adds nothing at all (whoever crafted it chose its other globals too). A name that Python cannot
import from here is left out with the reason: a class defined in the script that saved the file
(``__main__``), or a name that is not a dotted Python identifier (a crafted file could name
anything, and the snippet is code: nothing but identifiers reaches it). Everything left out is
listed in comments, so the whole text still runs.
"""

from __future__ import annotations

import keyword
from typing import Iterable

from torchaudit.report import CheckpointFile, printable
from torchaudit.reports import wording as w


def python_name(name: str) -> bool:
    """``module.attr``: at least two dotted parts, each an identifier and none a keyword."""
    parts = name.split(".")
    return len(parts) >= 2 and all(p.isidentifier() and not keyword.iskeyword(p) for p in parts)


def left_out_reason(name: str, status: str, why: str) -> str | None:
    """Why a global outside the allowlist stays out of the call, or ``None`` when it goes in."""
    if status == "dangerous":
        return f"dangerous ({why}): never allow it"
    if not python_name(name):
        return "not a Python name: nothing can import it"
    if name.startswith("__main__."):
        return ("defined in the script that saved the file (__main__), so it cannot be imported from here: "
                f"move it into a module, or call add_safe_globals([{name.split('.', 1)[1]}]) where it is defined")
    return None


def allowlist_snippet(files: Iterable[CheckpointFile]) -> str:
    """The snippet for these files together (one process loads them all)."""
    files = [f for f in files if f.error is None]
    allow: dict[str, None] = {}
    left_out: dict[str, str] = {}
    refused: list[str] = []  # comment lines on the dangerous files
    for f in files:
        if f.verdict == "dangerous":
            worst = ", ".join(g.name for g in f.imports if g.status == "dangerous")
            refused.append(f"#   {printable(w.display_path(f.path))}: imports {printable(worst)}: do not load it")
            continue
        if f.verdict == "ambiguous":
            refused.append(f"#   {printable(w.display_path(f.path))}: zip readers disagree about it (TA605): do not load it")
            continue
        for g in f.imports:
            if g.status == "allowlisted" or g.name in allow or g.name in left_out:
                continue
            reason = left_out_reason(g.name, g.status, g.why)
            if reason is None:
                allow[g.name] = None
            else:
                left_out[g.name] = reason
    names = ", ".join(printable(w.display_path(f.path)) for f in files) or "no readable file"
    lines = [f"# torchaudit checkpoint --allowlist: what torch.load(weights_only=True) needs to load {names}"]
    if allow:
        modules = sorted({"torch", *(name.rsplit(".", 1)[0] for name in allow)})
        lines += [
            "# Review every name: an allowed global is one any checkpoint may call or build, with any arguments.",
            *(f"import {m}" for m in modules),
            "",
            "torch.serialization.add_safe_globals([",
            *(f"    {name}," for name in sorted(allow)),
            "])",
        ]
    elif left_out or refused:
        lines.append("# nothing can be allowed: see below")
    else:
        lines.append("# nothing to allow: every global these files import is on the weights-only allowlist")
    if refused:
        lines.append("# left out, dangerous or ambiguous files (nothing they import is allowed):")
        lines += refused
    if left_out:
        lines.append(f"# left out ({w.plural(len(left_out), 'global')}):")
        lines += [f"#   {printable(name)}: {printable(reason)}" for name, reason in sorted(left_out.items())]
    return "\n".join(lines) + "\n"
