from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.analyzer.load.checkpoint_match import owner
from torchaudit.report import Finding, Location, Severity
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class ShapeMismatch(Rule):
    """
    What it finds:
        A checkpoint tensor whose shape differs from the model's tensor of the same name (read
        from the safetensors header or the loaded entries; no values needed).

    Why it matters:
        `load_state_dict` raises `size mismatch` for it even with `strict=False`: the
        checkpoint belongs to a differently configured model (other width, vocabulary, number
        of classes).

    Example:
        The checkpoint's `head.weight` is `[1000, 512]`, the model's is `[10, 512]`: a
        fine-tuning model loading the ImageNet head.

    Fix:
        Build the model with the configuration the checkpoint was trained with, or drop those
        keys from the state dict and load the rest with `strict=False`.

    Fact:
        `Module._load_from_state_dict` (torch/nn/modules/module.py) appends "size mismatch
        for {key}" to `error_msgs`, and `load_state_dict` raises on any error message,
        whatever `strict` is.
    """

    code = "TA304"
    severity = Severity.ERROR
    title = "Shape mismatch between checkpoint and model"
    needs = frozenset({"checkpoint", "tree"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        found = ctx.checkpoint_alignment
        if found is None:
            return
        ckpt, al, model = found
        entries = ckpt.entries
        assert entries is not None  # checkpoint_alignment is None for a checkpoint without entries
        for ckey, mkey in al.to_model.items():
            have, want = entries[ckey], model[mkey]
            if have.shape == want.shape:
                continue
            yield self.finding(
                f"checkpoint {ckey} has shape {list(have.shape)}, the model's {mkey} has {list(want.shape)}",
                fix="build the model with the configuration the checkpoint was trained with, or drop this key and load with strict=False",
                module=owner(mkey)[0],
                location=Location(str(ckpt.path)),
                evidence={"key": mkey, "checkpoint_shape": list(have.shape), "model_shape": list(want.shape)},
            )
