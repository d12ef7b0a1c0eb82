from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.analyzer.load.checkpoint_match import PREFIXES
from torchaudit.report import Finding, Location, Severity
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class KeyPrefix(Rule):
    """
    What it finds:
        Checkpoint and model keys that differ by one known prefix: `module.` (saved from a
        `DataParallel`/`DistributedDataParallel` wrapper), `_orig_mod.` (saved from a
        `torch.compile`d model), `model.` (a Lightning module or another wrapper). When a
        prefix explains the difference, this one finding replaces a flood of TA301/TA302.

    Why it matters:
        `load_state_dict` matches keys by exact name: with `strict=True` it raises on every
        key; with `strict=False` it loads nothing at all and the model keeps random weights.

    Example:
        `torch.save(ddp_model.state_dict(), "ckpt.pt")` gives `module.fc.weight`; the plain
        model expects `fc.weight`.

    Fix:
        Strip the prefix before loading, e.g.
        `torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(sd, "module.")`, or
        save `model.module.state_dict()` (`model._orig_mod.state_dict()`) in the first place.

    Fact:
        `consume_prefix_in_state_dict_if_present` lives in torch/nn/modules/utils.py;
        `_load_from_state_dict` (torch/nn/modules/module.py) looks keys up as `prefix + name`.
    """

    code = "TA303"
    severity = Severity.ERROR
    title = "Checkpoint and model keys differ by a prefix"
    needs = frozenset({"checkpoint", "tree"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        found = ctx.checkpoint_alignment
        if found is None:
            return
        ckpt, al, _ = found
        if al.prefix is None:
            return
        source = PREFIXES[al.prefix][0]
        if al.prefix_side == "checkpoint":
            message = (
                f"every checkpoint key carries the prefix {al.prefix!r} (saved from {source}) that the model's "
                f"keys lack: {len(al.to_model)} keys match once it is stripped"
            )
        else:
            message = (
                f"every model key carries the prefix {al.prefix!r} (the model is wrapped by {source}) that the "
                f"checkpoint's keys lack: {len(al.to_model)} keys match once it is added"
            )
        yield self.finding(
            message,
            fix=al.describe_fix(),
            module="",
            location=Location(str(ckpt.path)),
            evidence={"prefix": al.prefix, "side": al.prefix_side, "matched": len(al.to_model)},
        )
