"""TA204: one parameter under several names (tied weights)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class TiedWeights(Rule):
    """
    What it finds:
        A parameter reachable under more than one name (weight tying, e.g. an embedding shared
        with the output projection).

    Why it matters:
        `torch.save(state_dict())` writes it under every name; `safetensors` refuses shared
        tensors unless told; and a model rebuilt without re-tying loads two independent
        copies that drift apart on the first optimizer step.

    Example:
        `self.head.weight = self.embed.weight`. Two layers with equal but separate weights are
        silent.

    Fix:
        Re-tie after building and after loading (`model.tie_weights()` in transformers), and
        save with `safetensors.torch.save_model`, which handles shared tensors.

    Fact:
        `Module.named_parameters(remove_duplicate=False)` (torch/nn/modules/module.py) yields a
        shared parameter once per name; the default de-duplicates by identity.
    """

    code = "TA204"
    severity = Severity.INFO
    title = "Tied weights"

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        groups: dict[int, list[str]] = {}
        for name, p in ctx.model.named_parameters(remove_duplicate=False):
            groups.setdefault(id(p), []).append(name)
        for names in groups.values():
            if len(names) < 2:
                continue
            owner = names[1].rpartition(".")[0]
            yield self.finding(
                f"one parameter is shared by {', '.join(names)}: saved under every name, refused by safetensors, "
                "and untied by a rebuild that forgets to re-tie",
                fix="re-tie the weights after building and loading the model, and save with safetensors' save_model",
                module=owner,
                evidence={"names": names},
            )
