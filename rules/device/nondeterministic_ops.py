"""TA503: ops with nondeterministic CUDA kernels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil, sites
from torchaudit.rules.dtype.common import op_name
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext
    from torchaudit.analyzer.trace.graph import GraphNode

# forward ops from the `torch.use_deterministic_algorithms` docstring of torch 2.13
ALWAYS = {
    "index_add", "scatter_add", "index_copy", "scatter_reduce", "put", "histc", "median", "nll_loss",
    "max_unpool1d", "max_unpool2d", "max_unpool3d", "nanmedian",
}
MODULES = {"MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d", "NLLLoss"}


def _why(node: GraphNode, ctx: AuditContext) -> str | None:
    if node.op == "call_module":
        return node.op_name if node.op_name in MODULES else None
    if node.op not in ("call_function", "call_method"):
        return None
    op = op_name(node.target)
    if op not in ALWAYS and op not in ("index_put", "scatter", "bincount", "cumsum"):
        return None
    fx = sites.fx_node(ctx, node.name)
    args = list(fx.args) if fx is not None else []
    kwargs = dict(fx.kwargs) if fx is not None else {}
    if op in ALWAYS:
        return op
    if op == "index_put":  # nondeterministic with accumulate=True
        acc = kwargs.get("accumulate", args[3] if len(args) > 3 else False)
        return "index_put(accumulate=True)" if acc is True else None
    if op == "scatter":  # with a Tensor src
        src = kwargs.get("src", args[3] if len(args) > 3 else None)
        return "scatter(src=Tensor)" if hasattr(src, "op") else None
    if op == "bincount":
        return "bincount(weights=...)" if kwargs.get("weights") is not None or len(args) > 1 else None
    if op == "cumsum" and node.dtype in ("float16", "bfloat16", "float32", "float64"):
        return "cumsum (floating point)"
    return None


@register
class NondeterministicOp(Rule):
    """
    What it finds:
        Ops in the graph that use nondeterministic CUDA kernels: `index_add`, `scatter_add`,
        `index_put(accumulate=True)`, `index_copy`, `scatter` with a tensor `src`,
        `scatter_reduce`, `put_`, `histc`, `bincount` with weights, `median` with indices,
        floating-point `cumsum`, `nll_loss`, `MaxUnpool1d/2d/3d`.

    Why it matters:
        On CUDA two runs with the same inputs can differ in the last bits (atomic adds in a
        different order), so bit-exact regression tests and determinism checks fail.

    Example:
        `out.index_add_(0, idx, src)` in `forward`. `torch.gather` without grad is silent.

    Fix:
        Call `torch.use_deterministic_algorithms(True)` (and set `CUBLAS_WORKSPACE_CONFIG`)
        where bit-exact results matter, or compare with a tolerance.

    Fact:
        The docstring of `torch.use_deterministic_algorithms` (torch/__init__.py) lists these
        forward ops as nondeterministic on CUDA (backward-only entries are not listed here).
    """

    code = "TA503"
    severity = Severity.INFO
    title = "Nondeterministic CUDA op"
    needs = frozenset({"graph"})

    def __init__(self) -> None:
        self.sites = sites.Sites()

    def check_node(self, node: GraphNode, ctx: AuditContext) -> Iterable[Finding]:
        why = _why(node, ctx)
        if why:
            self.sites.add(node.location, [node.module], node=node.name, op=why, target=node.target)
        return ()

    def finish(self, ctx: AuditContext) -> Iterable[Finding]:
        for site in self.sites:
            module, extra = astutil.attribution(site.modules)
            yield self.finding(
                f"{site.data['op']} uses a nondeterministic CUDA kernel: runs on CUDA can differ in the last bits",
                fix="call torch.use_deterministic_algorithms(True) where bit-exact results matter, or compare with a tolerance",
                module=module,
                node=site.node,
                location=site.location,
                evidence={"op": site.data["op"], "target": site.data["target"], **extra},
            )
