from __future__ import annotations

from typing import TYPE_CHECKING, Iterable


from torchaudit.report import Finding, Location, Severity
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


def _name(dtype: object) -> str:
    return str(dtype).removeprefix("torch.")


@register
class DtypeMismatch(Rule):
    """
    What it finds:
        Checkpoint tensors whose dtype differs from the model's tensor of the same name,
        grouped by the pair of dtypes (a float16 checkpoint into a float32 model is one
        finding, not one per tensor).

    Why it matters:
        `load_state_dict` casts into the model's dtype: loading float32 weights into a
        float16 model loses precision, loading float16 weights into a float32 model invents
        digits that were never trained. `load_state_dict(..., assign=True)` instead changes
        the model's dtype to the checkpoint's.

    Example:
        A bfloat16 checkpoint published for inference, loaded into a float32 model built from
        the training code.

    Fix:
        Build (or `.to()`) the model in the checkpoint's dtype, or cast deliberately and
        compare outputs (`torchaudit scan --compare dtype`).

    Fact:
        `Module._load_from_state_dict` (torch/nn/modules/module.py) copies with
        `param.copy_(input_param)` under `torch.no_grad()`, which casts; with `assign=True`
        it sets the checkpoint tensor itself.
    """

    code = "TA305"
    severity = Severity.WARNING
    title = "Dtype differs between checkpoint and model"
    needs = frozenset({"checkpoint", "tree"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        found = ctx.checkpoint_alignment
        if found is None:
            return
        ckpt, al, model = found
        entries = ckpt.entries
        assert entries is not None  # checkpoint_alignment is None for a checkpoint without entries
        pairs: dict[tuple[str, str], list[str]] = {}
        for ckey, mkey in al.to_model.items():
            in_file, in_model = entries[ckey], model[mkey]
            if in_file.dtype != in_model.dtype:
                pairs.setdefault((_name(in_file.dtype), _name(in_model.dtype)), []).append(mkey)
        for (have, want), keys in pairs.items():
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            yield self.finding(
                f"{len(keys)} checkpoint tensor{'s are' if len(keys) > 1 else ' is'} {have} where the model has {want} "
                f"({shown}): load_state_dict casts them to {want}",
                fix=f"build or .to() the model in {have} to keep the checkpoint's values, or cast deliberately and compare outputs",
                module=keys[0].rpartition(".")[0] if len(keys) == 1 else "",
                location=Location(str(ckpt.path)),
                evidence={"checkpoint_dtype": have, "model_dtype": want, "keys": keys},
            )
