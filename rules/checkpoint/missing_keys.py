from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.analyzer.load.checkpoint_match import by_owner, filled_by_tie, listing, tied_groups
from torchaudit.report import Finding, Location, Severity
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class MissingKeys(Rule):
    """
    What it finds:
        Entries of the model's state dict that the checkpoint does not have (after any prefix
        that TA303 explains), grouped by the module that owns them (by a shorter module path
        when that would make more than 50 findings). A tied weight stored once
        (`lm_head.weight` is `transformer.wte.weight`, and `save_pretrained` keeps one name)
        is not missing: the load fills every name of it (TA311 covers `assign=True`, which
        does not).

    Why it matters:
        With `strict=False` those parameters and buffers silently keep their initial values:
        the model loads, runs, and answers with random weights in part of the network.

    Example:
        A checkpoint saved before a `head` layer was added: `head.weight` and `head.bias`
        are missing.

    Fix:
        Load a checkpoint of this very model, or initialize the missing part deliberately and
        load with `strict=False` while checking the returned `missing_keys`.

    Fact:
        `Module.load_state_dict` (torch/nn/modules/module.py) collects them in `missing_keys`
        (from `_load_from_state_dict`) and raises only when `strict=True`. It lists a tied
        name there too, yet `_load_from_state_dict` copies the stored key into the one shared
        parameter (`param.copy_(input_param)`), which both names hold.
    """

    code = "TA301"
    severity = Severity.ERROR
    title = "Model keys missing from the checkpoint"
    needs = frozenset({"checkpoint", "tree"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        found = ctx.checkpoint_alignment
        if found is None:
            return
        ckpt, al, _ = found
        tied = filled_by_tie(al.missing, al.to_model.values(), tied_groups(ctx.model))
        for mod, names in by_owner(k for k in al.missing if k not in tied).items():
            yield self.finding(
                f"the checkpoint has no {listing(names)} for module {mod or '<root>'}: "
                f"{'they keep' if len(names) > 1 else 'it keeps'} the initial values",
                fix="load a checkpoint of this model, or load with strict=False and initialize these deliberately",
                module=mod,
                location=Location(str(ckpt.path)),
                evidence={"missing_keys": [f"{mod}.{n}" if mod else n for n in names]},
            )
