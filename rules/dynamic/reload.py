from __future__ import annotations

from torchaudit.report import ComparisonResult, Divergence, Severity
from torchaudit.rules.dynamic.base import DivergenceRule, where
from torchaudit.rules.engine import register


@register
class ReloadChangesOutputs(DivergenceRule):
    """
    What it finds:
        The `reload` comparison parted: a copy of the model after a few train-mode forward
        passes, and a fresh instance that loaded that copy's `state_dict()`, give different
        activations in eval mode. The finding names the first node whose own output differs
        and the state (`state_diff`) that differs between the two instances.

    Why it matters:
        This is the model a serving script rebuilds from a checkpoint. Whatever the state
        dict does not carry (a non-persistent buffer, a plain tensor attribute, a Python
        counter that forward reads) is lost on reload, and the deployed model answers
        differently from the one that was trained and evaluated.

    Example:
        `self.register_buffer("seen", torch.zeros(1), persistent=False)` updated in forward,
        or `self.calls += 1` in forward with `self.calls` read later.

    Fix:
        Keep state that forward depends on in persistent buffers (`register_buffer(name, t)`)
        or in `get_extra_state`/`set_extra_state`, so `state_dict()` carries it.

    Fact:
        `nn.Module.state_dict` saves parameters and buffers not in
        `_non_persistent_buffers_set` (torch/nn/modules/module.py, `_save_to_state_dict`);
        plain attributes are not saved.
    """

    code = "TA701"
    severity = Severity.ERROR
    title = "Reloading through state_dict changes the outputs"
    comparison = "reload"

    def message(self, result: ComparisonResult, d: Divergence, error: str) -> str:
        names = ", ".join(f"{s.name} ({s.kind.replace('_', ' ')})" for s in result.state_diff[:5]) or "none found"
        return (f"a fresh instance loaded from the trained model's state_dict gives other outputs, first at "
                f"{where(d)}: {error}; state that differs: {names}")

    def fix_text(self, result: ComparisonResult, d: Divergence) -> str:
        return "register the state forward depends on as a persistent buffer, or save it via get_extra_state/set_extra_state"
