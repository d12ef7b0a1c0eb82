"""TA311: ``load_state_dict(..., assign=True)`` on a model with tied weights."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Iterable

from torchaudit.analyzer.load.checkpoint_match import tied_groups
from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext, SourceFile


def _assigns(call: ast.Call) -> bool:
    """``assign=`` passed and not a literal False."""
    value = astutil.argument(call, "assign", 2)
    return value is not None and not astutil.is_constant(value, False)


def _reties(call: ast.Call, src: SourceFile, leaves: set[str]) -> bool:
    """After ``call``, in the same function: ``model.tie_weights()`` or an assignment
    ``a.<leaf> = b.<leaf>`` of a tied parameter's name (``head.weight = embed.weight``)."""
    scope: ast.AST = astutil.enclosing_function(call, src) or src.tree
    for n in astutil.walk_body(scope) if not isinstance(scope, ast.Module) else ast.walk(scope):
        if getattr(n, "lineno", 0) <= call.lineno:
            continue
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and "tie" in n.func.attr.lower():
            return True
        if (
            isinstance(n, ast.Assign)
            and isinstance(n.value, ast.Attribute)
            and n.value.attr in leaves
            and any(isinstance(t, ast.Attribute) and t.attr in leaves for t in n.targets)
        ):
            return True
    return False


@register
class AssignUntiesWeights(Rule):
    """
    What it finds:
        `load_state_dict(..., assign=True)` in the model's code when the model has tied
        weights (one parameter under several names, TA204), unless the same function re-ties
        them afterwards (`model.tie_weights()`, `head.weight = embed.weight`).

    Why it matters:
        With `assign=True` each name gets its own tensor from the state dict: the tie is
        gone, the two copies drift apart at the first optimizer step, and a checkpoint that
        stores the tied matrix once (`save_pretrained` keeps one name) leaves the other name
        at its initial values. Without `assign=True` the load copies into the one shared
        parameter and the tie holds.

    Example:
        `model.load_state_dict(sd, assign=True)` for a GPT-2 whose `lm_head.weight` is
        `transformer.wte.weight`. The silent look-alike calls `model.tie_weights()` after it.

    Fix:
        Re-tie right after the load (`model.tie_weights()` in transformers, or
        `model.lm_head.weight = model.transformer.wte.weight`), or load without `assign=True`.

    Fact:
        `Module._load_from_state_dict` (torch/nn/modules/module.py) does
        `setattr(self, name, input_param)` per module when `assign_to_params_buffers` is set,
        and `param.copy_(input_param)` otherwise; only the copy writes into the shared
        `Parameter` (unless `torch.__future__.set_swap_module_params_on_conversion(True)`,
        which swaps the tensors in place).
    """

    code = "TA311"
    severity = Severity.WARNING
    title = "load_state_dict(assign=True) unties tied weights"

    def check_source(self, node: ast.AST, source: SourceFile, ctx: AuditContext) -> Iterable[Finding]:
        assert isinstance(node, ast.Call)
        if not (isinstance(node.func, ast.Attribute) and node.func.attr == "load_state_dict" and _assigns(node)):
            return
        groups = tied_groups(ctx.model)
        if not groups or _reties(node, source, {k.rpartition(".")[2] for g in groups for k in g}):
            return
        names = " and ".join(", ".join(g) for g in groups[:3])
        lost = self._stored_once(ctx, groups)
        module, extra = astutil.owner_attribution(ctx, source, node)
        yield self.finding(
            f"load_state_dict(..., assign=True) unties {names}: each name gets its own tensor, so the tied weights "
            "become separate parameters" + (f"; this checkpoint stores them once, so {', '.join(lost)} would keep the "
                                            "initial values" if lost else ""),
            fix="re-tie after loading (model.tie_weights() in transformers, or assign the shared parameter again), "
            "or load without assign=True",
            module=module,
            location=astutil.location(source, node),
            evidence={"tied": [list(g) for g in groups], "not_in_checkpoint": lost, **extra},
        )

    @staticmethod
    def _stored_once(ctx: AuditContext, groups: list[tuple[str, ...]]) -> list[str]:
        """Tied names that the checkpoint (if any) lacks while it has another name of theirs."""
        found = ctx.checkpoint_alignment
        if found is None:
            return []
        have = set(found[1].to_model.values())
        return [k for g in groups if any(n in have for n in g) for k in g if k not in have]
