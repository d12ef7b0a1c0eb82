"""TA205: parametrized weights change state-dict keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch.nn as nn
from torch.nn.utils import parametrize
from torch.nn.utils.weight_norm import WeightNorm

from torchaudit.report import Finding, Severity
from torchaudit.rules.astutil import module_finding_args
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class ParametrizedWeights(Rule):
    """
    What it finds:
        A module whose tensors are parametrized (`torch.nn.utils.parametrize`,
        `parametrizations.weight_norm`, `spectral_norm`) or wrapped by the older hook-based
        `torch.nn.utils.weight_norm`.

    Why it matters:
        Its state-dict keys are not `weight` but `parametrizations.weight.original0/1` (or
        `weight_g`/`weight_v` for the old hook): a checkpoint saved with the parametrization
        does not load into the plain model and the other way round.

    Example:
        `self.fc = parametrizations.weight_norm(nn.Linear(8, 8))`; a plain `nn.Linear` is silent.

    Fix:
        Load checkpoints into a model built with the same parametrization, or remove it
        before saving (`parametrize.remove_parametrizations(module, "weight")`).

    Fact:
        `parametrize.register_parametrization` (torch/nn/utils/parametrize.py) moves the tensor
        to `module.parametrizations[name].original`; `WeightNorm.apply`
        (torch/nn/utils/weight_norm.py) registers `name_g` and `name_v`.
    """

    code = "TA205"
    severity = Severity.INFO
    title = "Parametrized weights"

    def check_module(self, path: str, module: nn.Module, ctx: AuditContext) -> Iterable[Finding]:
        keys: list[str] = []
        if parametrize.is_parametrized(module):
            plists = module.parametrizations
            assert isinstance(plists, nn.ModuleDict)  # is_parametrized checks that it is one
            for name, plist in plists.items():
                keys += [f"parametrizations.{name}.{k}" for k, _ in plist.named_parameters(recurse=False)]
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, WeightNorm):
                keys += [f"{hook.name}_g", f"{hook.name}_v"]
        if keys:
            yield self.finding(
                f"{type(module).__name__} is parametrized: its state-dict keys are {', '.join(keys)}, "
                "not the plain tensor names",
                fix="load checkpoints into a model with the same parametrization, or remove it before saving",
                evidence={"keys": keys},
                **module_finding_args(ctx, path),
            )
