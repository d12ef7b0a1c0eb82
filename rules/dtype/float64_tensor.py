"""TA403: float64 tensors in a float32 model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil, sites
from torchaudit.rules.dtype.common import op_name, own_tensors
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext
    from torchaudit.analyzer.trace.graph import GraphNode

_GENERATED = ("_tensor_constant", "lifted_tensor_")


@register
class Float64Tensor(Rule):
    """
    What it finds:
        float64 parameters, buffers or plain tensor attributes in a model whose weights are
        float32, and float64 constants or `.double()` casts in its traced graph.

    Why it matters:
        Type promotion makes every op that touches a float64 tensor compute in float64: the
        activations change dtype mid-model, run slower, and differ from the float32 result
        (and CUDA kernels for float64 are much slower).

    Example:
        `self.register_buffer("scale", torch.tensor([0.5], dtype=torch.float64))` or a NumPy
        array turned into a tensor (NumPy defaults to float64). The silent look-alike creates
        it with the model's dtype.

    Fix:
        Create the tensor in the model's dtype (`dtype=torch.float32`, or `.float()` on NumPy
        data), or cast the whole model once.

    Fact:
        `torch.result_type` (type promotion) lets a dimensioned float64 tensor promote a
        float32 operand to float64; only zero-dimensional tensors of the same category do not.
    """

    code = "TA403"
    severity = Severity.WARNING
    title = "float64 tensor in a float32 model"

    def __init__(self) -> None:
        self.sites = sites.Sites()

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        if ctx.model_dtype != torch.float32:
            return
        for path, m in ctx.model.named_modules():
            names = [n for n, t in own_tensors(m) if t.dtype == torch.float64]
            names += [n for n, v in vars(m).items() if isinstance(v, torch.Tensor) and v.dtype == torch.float64 and not n.startswith("_")]
            for attr in sorted(set(names)):
                full = f"{path}.{attr}" if path else attr
                yield self.finding(
                    f"{full} is float64 in a float32 model: every op it touches is promoted to float64",
                    fix="create it with dtype=torch.float32 (or .float()), or cast the whole model once",
                    module=path,
                    location=astutil.attribute_site(ctx, path, attr),
                    evidence={"tensor": full},
                )

    def check_node(self, node: GraphNode, ctx: AuditContext) -> Iterable[Finding]:
        if node.dtype != "float64" or node.shape == () or ctx.model_dtype != torch.float32:
            return ()  # 0-dim tensors do not promote
        constant = node.op == "get_attr" and node.target.rsplit(".", 1)[-1].startswith(_GENERATED)
        cast = node.op in ("call_method", "call_function") and op_name(node.target) in ("double", "to", "_to_copy", "tensor")
        assert ctx.graph is not None
        preds = [ctx.graph.node(p).dtype for p in ctx.graph.predecessors(node.name)]
        if constant or (cast and "float64" not in preds):
            self.sites.add(node.location, [node.module], node=node.name, target=node.target)
        return ()

    def finish(self, ctx: AuditContext) -> Iterable[Finding]:
        for site in self.sites:
            module, extra = astutil.attribution(site.modules)
            yield self.finding(
                "a float64 tensor is created in forward of a float32 model: the ops it touches are promoted to float64",
                fix="create it with dtype=torch.float32, or cast it to the input's dtype",
                module=module,
                node=site.node,
                location=site.location,
                evidence={"target": site.data["target"], **extra},
            )
