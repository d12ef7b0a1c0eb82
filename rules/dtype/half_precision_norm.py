"""TA402: normalization, softmax or large reductions in float16/bfloat16."""

from __future__ import annotations

from math import prod
from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil, sites
from torchaudit.rules.dtype.common import HALF, NORMS, name, op_name
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    import torch.nn as nn

    from torchaudit.analyzer.context import AuditContext
    from torchaudit.analyzer.trace.graph import GraphNode

SENSITIVE = {"softmax", "log_softmax", "layer_norm", "group_norm", "batch_norm", "rms_norm", "native_layer_norm", "normalize"}
REDUCTIONS = {"sum", "mean", "var", "std", "norm", "logsumexp", "cumsum", "var_mean", "std_mean"}
LARGE = 1024  # elements reduced into one output element


@register
class HalfPrecisionNormalization(Rule):
    """
    What it finds:
        Normalization layers whose parameters are float16/bfloat16 (the whole model
        `.half()`-ed, norm layers included), and softmax, normalization or large reductions
        (over 1024 elements into one) whose output in the traced graph is float16/bfloat16.

    Why it matters:
        float16 overflows above 65504 and has 11 bits of mantissa: variances, sums of squares
        and softmax denominators overflow or lose the small terms. Mixed-precision recipes
        (autocast) keep exactly these ops in float32.

    Example:
        `model.half()` on a model with `nn.LayerNorm`, or `torch.softmax(scores, -1)` on half
        scores. The silent look-alike upcasts: `torch.softmax(scores.float(), -1)`.

    Fix:
        Use `torch.autocast` instead of casting the model, or keep norm layers in float32 and
        upcast before softmax/reductions (`x.float()`, or `dtype=torch.float32`).

    Fact:
        `torch.finfo(torch.float16).max` is 65504; autocast's float32 list
        (torch/amp/autocast_mode.py docs) includes `softmax`, `layer_norm`, `group_norm`,
        `norm`, `sum` and `cumsum`.
    """

    code = "TA402"
    severity = Severity.WARNING
    title = "Normalization or reduction in half precision"

    def __init__(self) -> None:
        self.sites = sites.Sites()

    def check_module(self, path: str, module: nn.Module, ctx: AuditContext) -> Iterable[Finding]:
        half = half_norm(module)
        if half:
            yield self.finding(
                f"{type(module).__name__} runs in {half}: variance and mean overflow or lose precision",
                fix="keep normalization layers in float32 (or use torch.autocast instead of .half())",
                **astutil.module_finding_args(ctx, path),
            )

    def check_node(self, node: GraphNode, ctx: AuditContext) -> Iterable[Finding]:
        if node.op not in ("call_function", "call_method") or node.dtype not in ("float16", "bfloat16"):
            return ()
        try:
            if half_norm(ctx.model.get_submodule(node.module)):
                return ()  # the norm layer's own finding (check_module) covers its ops
        except AttributeError:
            pass
        op = op_name(node.target)
        if op in REDUCTIONS:
            assert ctx.graph is not None
            ins = [ctx.graph.node(p).shape for p in ctx.graph.predecessors(node.name)]
            biggest = max((prod(s) for s in ins if s), default=0)
            if node.shape is None or biggest < LARGE * max(prod(node.shape or (1,)), 1):
                return ()
        elif op not in SENSITIVE:
            return ()
        self.sites.add(node.location, [node.module], node=node.name, op=op, dtype=node.dtype, target=node.target)
        return ()

    def finish(self, ctx: AuditContext) -> Iterable[Finding]:
        for site in self.sites:
            module, extra = astutil.attribution(site.modules)
            yield self.finding(
                f"{site.data['op']} runs in {site.data['dtype']}: it overflows above 65504 or loses small terms",
                fix=f"upcast before {site.data['op']} (x.float(), or dtype=torch.float32) or use torch.autocast",
                module=module,
                node=site.node,
                location=site.location,
                evidence={"op": site.data["op"], "dtype": site.data["dtype"], "target": site.data["target"], **extra},
            )


def half_norm(module: nn.Module) -> str | None:
    """The half dtype of a normalization layer's own tensors, or None."""
    if not isinstance(module, NORMS):
        return None
    tensors = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
    half = sorted(name(t.dtype) for t in tensors if t.dtype in HALF)
    return half[0] if half else None
