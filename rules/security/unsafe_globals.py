from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Location, Severity
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class UnsafePickleGlobals(Rule):
    """
    What it finds:
        Globals the checkpoint's pickle would import that are outside PyTorch's weights-only
        allowlist, one finding each; dangerous ones (`os`, `subprocess`, `builtins.exec`,
        `builtins.eval`, `builtins.getattr`, `runpy`, `importlib`, `socket`, `pickle`, a
        `STACK_GLOBAL` whose name is computed, ...) are marked and say why. Found by reading
        the pickle opcodes (`GLOBAL`, `INST`, `STACK_GLOBAL` with its memo), never by
        unpickling: the file is not loaded. Every pickle torch could read is scanned: every
        `*.pkl` member of a zip, all five pickles of a legacy file, the members of a pre-0.4
        tar; a pickle that breaks part way ("nullifAI") still counts for what it imports
        before the break, since unpickling runs those opcodes before it raises.

    Why it matters:
        Unpickling calls what the pickle names: a checkpoint whose pickle imports `os.system`
        runs a shell command the moment `torch.load(weights_only=False)` reads it. An
        allowlist is the only defence; blocklists keep being bypassed.

    Example:
        An object whose `__reduce__` returns `(os.system, ("curl ... | sh",))`, saved with
        `torch.save`: the file imports `posix.system`.

    Fix:
        Do not load the file. If you made it yourself, re-save `model.state_dict()` with
        safetensors; if a global is yours and harmless, allow it with
        `torch.serialization.add_safe_globals`.

    Fact:
        The allowlist is `torch._weights_only_unpickler._get_allowed_globals` plus
        `_get_user_allowed_globals`; `torch.serialization.get_unsafe_globals_in_checkpoint`
        lists the same for zip files but reads only `GLOBAL` opcodes.
    """

    code = "TA601"
    severity = Severity.ERROR
    title = "Checkpoint pickle imports globals outside the weights-only allowlist"
    needs = frozenset({"checkpoint"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        ckpt = ctx.checkpoint
        if ckpt is None:
            return
        done = "it WAS unpickled, because of --trust-checkpoint" if ckpt.trusted else "the file was not unpickled"
        if ckpt.damage:  # a "broken" pickle runs what comes before the break, then raises
            done += f" ({ckpt.damage}; unpickling would run everything before the break)"
        for g in ckpt.unsafe_globals:
            kind = f"dangerous: {g.why}" if g.dangerous else "not in the weights-only allowlist"
            yield self.finding(
                f"the checkpoint's pickle imports {g.name} ({kind}); {done}",
                fix="do not load this file; if you made it, re-save model.state_dict() with safetensors",
                module="",
                location=Location(str(ckpt.path)),
                evidence={
                    "global": g.name, "dangerous": g.dangerous, "reason": g.why, "unpickled": ckpt.trusted,
                    "damage": ckpt.damage,
                },
            )
