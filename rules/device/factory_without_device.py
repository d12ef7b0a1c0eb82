"""TA501: a tensor created at run time without ``device=``."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil, callgraph, sites
from torchaudit.rules.device.common import factory_name
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext
    from torchaudit.analyzer.sources import SourceFile, SourceView
    from torchaudit.analyzer.trace.graph import GraphNode

_GENERATED = ("_tensor_constant", "lifted_tensor_")


@register
class FactoryWithoutDevice(Rule):
    """
    What it finds:
        A tensor factory (`torch.zeros`, `ones`, `arange`, `tensor`, `full`, `rand`, ...)
        called in `forward`, or in code `forward` calls (a helper method, directly or through
        another helper; a submodule's method; a function of the same file), without `device=`.
        In the fx graph these are `call_function` nodes without a `device` argument, or
        `_tensor_constantN` attributes when the arguments were constant (the tensor was built
        once, at trace time). Which code runs is decided by following calls from `forward`
        (rules/callgraph.py), not by method names: a helper that only `__init__` (or
        `reset_parameters`, `_init_weights`) calls is set-up code and is silent.

    Why it matters:
        Factories use the default device, the CPU: on a CUDA model the op that meets this
        tensor fails with a device mismatch, or the model silently copies it every call. A
        traced constant is also frozen at trace time.

    Example:
        `mask = torch.ones(x.shape[1])` in `forward` or in `self._mask(n)` that `forward`
        calls. The silent look-alikes pass `device=x.device`, use `torch.ones_like(x)`, or
        build the tensor in `__init__` (or a helper only `__init__` calls) and register it as
        a buffer.

    Fix:
        Pass `device=x.device` (and `dtype=x.dtype`) from an input, use the `*_like` factories,
        or register constant tensors as buffers in `__init__` so `.to()` moves them.

    Fact:
        Factory functions place tensors on `torch.get_default_device()` (the CPU unless
        changed) when `device` is None (torch/__init__.py, `get_default_device`);
        `torch.fx.Tracer.create_arg` stores tensors built during tracing as
        `_tensor_constantN` attributes (torch/fx/_symbolic_trace.py).
    """

    code = "TA501"
    severity = Severity.WARNING
    title = "Tensor created in forward without device="
    needs = frozenset({"source"})  # the Python source is enough: runs in lint too

    def __init__(self) -> None:
        self.sites = sites.Sites()

    def check_node(self, node: GraphNode, ctx: AuditContext) -> Iterable[Finding]:
        if ctx.graph is None or ctx.graph.tracer == "export":  # export spells the device out
            return ()
        made = factory_name(node.target) if node.op == "call_function" else None
        fx = sites.fx_node(ctx, node.name) if made else None
        constant = node.op == "get_attr" and node.target.rsplit(".", 1)[-1].startswith(_GENERATED)
        # a traced constant is located where it is used; the source walk finds where it was
        # built, so constants only count where there is no source to read
        constant = constant and not sites.in_sources(ctx, node.location)
        if node.shape == () or _third_party(node.location):
            return ()  # a 0-dim CPU tensor mixes with CUDA tensors; a library's code is not the user's
        if (made and fx is not None and "device" not in fx.kwargs) or constant:
            self.sites.add(node.location, [node.module] if node.module else [], node=node.name, target=node.target)
        return ()

    def check_source(self, node: ast.AST, source: SourceFile, ctx: SourceView) -> Iterable[Finding]:
        assert isinstance(node, ast.Call)
        name = astutil.call_name(node, source) or ""
        if not name.startswith("torch.") or factory_name(name) is None or astutil.argument(node, "device"):
            return ()
        if astutil.has_star_kwargs(node) or _scalar(node, name):
            return ()
        paths = callgraph.forward_paths(ctx, source, node)
        loc = astutil.location(source, node)
        if self.sites.has(loc):
            site = self.sites.add(loc, paths)  # the class's instances and the call's column
            site.location = loc
        elif paths:
            self.sites.add(loc, paths, target=name)
        return ()

    def finish(self, ctx: SourceView) -> Iterable[Finding]:
        for site in self.sites:
            if site.location is not None and not _in_forward_code(ctx, site):
                continue
            module, extra = astutil.attribution(site.modules)
            if module is None and site.node is not None:
                module = ""  # a graph constant of the root's forward
            yield self.finding(
                "a tensor is created in forward without device=: it lands on the CPU even when the model runs on CUDA"
                + astutil.instances_note(site.modules),
                fix="pass device=x.device (from an input), use a *_like factory, or register it as a buffer in __init__",
                module=module,
                node=site.node,
                location=site.location,
                evidence={"target": site.data.get("target"), **extra},
            )


def _in_forward_code(ctx: SourceView, site: sites.Site) -> bool:
    """A graph hit whose line is in set-up code (a buffer built in ``__init__`` or a helper only
    set-up calls, run at forward time by a lazily built submodule) is not TA501's; a line the
    call graph does not reach from either side ran in forward: the trace saw it."""
    for src, call in astutil.calls_at(ctx, site.location):
        owner = astutil.method_of(call, src)
        if (owner is not None and owner[1].name == "__init__") or callgraph.setup_only(ctx, src, call):
            return False  # __init__ itself also when its class has no instance yet (built in forward)
    return True


def _scalar(call: ast.Call, name: str) -> bool:
    """``torch.tensor(2.0)``: a 0-dim tensor, which CUDA ops accept from the CPU."""
    return name.endswith((".tensor", ".scalar_tensor")) and bool(call.args) and isinstance(call.args[0], ast.Constant)


def _third_party(loc: object) -> bool:
    file = getattr(loc, "file", "") or ""
    return "site-packages" in file or "dist-packages" in file
