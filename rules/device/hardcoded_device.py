"""TA502: a hard-coded CUDA device in the model's code."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil, callgraph, sites
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext
    from torchaudit.analyzer.sources import SourceFile, SourceView
    from torchaudit.analyzer.trace.graph import GraphNode

FACTORIES = {"build_model", "get_model", "fresh_model"}


def _cuda_literal(expr: ast.AST | None) -> str | None:
    """The device string of a literal ``"cuda..."``, else ``None``."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str) and expr.value.split(":")[0] == "cuda":
        return expr.value
    return None


def _guarded(node: ast.AST, src: SourceFile) -> bool:
    """Inside an ``if``/conditional expression that asks ``torch.cuda.is_available()``."""
    for a in astutil.ancestors(node, src):
        if isinstance(a, (ast.If, ast.IfExp)) and any(
            (astutil.call_name(n, src) or "").endswith("cuda.is_available") for n in ast.walk(a.test)
        ):
            return True
    return False


def hardcoded(call: ast.Call, src: SourceFile) -> str | None:
    if isinstance(call.func, ast.Attribute) and call.func.attr == "cuda" and not (astutil.call_name(call, src) or "").startswith("torch."):
        return ".cuda()"
    first = _cuda_literal(call.args[0]) if call.args else None
    if isinstance(call.func, ast.Attribute) and call.func.attr == "to" and first:
        return f'.to("{first}")'
    if astutil.call_name(call, src) == "torch.device" and first:
        return f'torch.device("{first}")'
    dev = _cuda_literal(astutil.argument(call, "device"))
    if dev:
        return f'device="{dev}"'
    return None


def _cuda_value(value: Any) -> str | None:
    """A traced argument that names a CUDA device (``"cuda:0"``, ``torch.device("cuda")``)."""
    import torch  # graph evidence exists only in a scan; lint imports this module without torch

    if isinstance(value, torch.device) and value.type == "cuda":
        return str(value)
    if isinstance(value, str) and value.split(":")[0] == "cuda":
        return value
    return None


def graph_hardcoded(node: GraphNode, ctx: AuditContext) -> str | None:
    """The hard-coded device of a traced call: ``x.cuda()``, ``x.to("cuda")``, ``device=`` a
    CUDA literal (only a trace made where CUDA runs records these)."""
    fx = sites.fx_node(ctx, node.name)
    if fx is None or node.op not in ("call_method", "call_function"):
        return None
    if node.op == "call_method" and node.target == "cuda":
        return ".cuda()"
    if node.op == "call_method" and node.target == "to":
        dev = next((d for d in map(_cuda_value, (*fx.args[1:], fx.kwargs.get("device"))) if d), None)
        return f'.to("{dev}")' if dev else None
    dev = _cuda_value(fx.kwargs.get("device"))
    return f'device="{dev}"' if dev else None


@register
class HardcodedDevice(Rule):
    """
    What it finds:
        A hard-coded CUDA device in the model's code (its classes' methods and its
        `build_model`/`get_model` factory): `.cuda()`, `.to("cuda")`, `device="cuda:0"`,
        `torch.device("cuda")`. Outside forward-time code a `torch.cuda.is_available()`
        guard makes it portable; in `forward` and the methods it calls (`self.helper(x)`)
        it is reported even under that guard, which only hides it from a trace made on a CPU.
        Read from the source, and from the graph when it was traced where CUDA runs (one
        finding per line).

    Why it matters:
        The model cannot be built or run on a CPU-only machine (tests, CI, export), and on a
        multi-GPU machine it pins tensors to one device regardless of where the model is. In
        forward, the guarded form sends activations to the default CUDA device even when the
        model was moved to the CPU or to another GPU.

    Example:
        `mask = torch.ones(n, device="cuda")` in `forward`, or
        `if torch.cuda.is_available(): x = x.cuda()` there. The silent look-alikes follow the
        input (`device=x.device`), or guard the model's own placement in `build_model`.

    Fix:
        Take the device from an input or a parameter (`x.device`,
        `next(self.parameters()).device`) and let the caller move the model with `.to()`.

    Fact:
        `Module.to` (torch/nn/modules/module.py) moves parameters and buffers only; a device
        literal in code is not affected by it, and `Tensor.cuda()` with no argument uses the
        current CUDA device (torch/_tensor_docs.py, `cuda`). `torch.fx` records only
        operations on its `Proxy` values (torch/fx/proxy.py); a plain-Python condition such as
        `torch.cuda.is_available()` runs once while tracing, so a CPU trace has no node for
        the guarded branch.
    """

    code = "TA502"
    severity = Severity.WARNING
    title = "Hard-coded CUDA device"
    needs = frozenset({"source"})  # the Python source is enough: runs in lint too

    def __init__(self) -> None:
        self.sites = sites.Sites()

    def check_node(self, node: GraphNode, ctx: AuditContext) -> Iterable[Finding]:
        what = graph_hardcoded(node, ctx)
        file = node.location.file if node.location is not None else ""
        if what is not None and "site-packages" not in file and "dist-packages" not in file:  # not a library's code
            self.sites.add(node.location, [node.module], node=node.name, code=what, forward="yes")
        return ()

    def check_source(self, node: ast.AST, source: SourceFile, ctx: SourceView) -> Iterable[Finding]:
        assert isinstance(node, ast.Call)
        what = hardcoded(node, source)
        if what is None:
            return ()
        owner = astutil.class_method(node, source)
        paths = astutil.instances(ctx, source, owner[0]) if owner is not None else []
        forward = owner is not None and bool(callgraph.forward_paths(ctx, source, node))
        guarded = _guarded(node, source)
        loc = astutil.location(source, node)
        if self.sites.has(loc):  # the graph saw it: the source adds its spelling, column and instances
            site = self.sites.add(loc, paths)
            site.location = loc
            site.data.update(code=what, method=owner[1].name if owner is not None else "")
            return ()
        if guarded and not (forward and paths):
            return ()
        fn = astutil.enclosing_function(node, source)
        if not paths and not (owner is None and fn is not None and fn.name in FACTORIES):
            return ()
        self.sites.add(loc, paths, code=what, forward="yes" if forward else "", guarded="yes" if guarded else "",
                       method=owner[1].name if owner is not None else "")
        return ()

    def finish(self, ctx: SourceView) -> Iterable[Finding]:
        for site in self.sites:
            what, method = site.data["code"], site.data.get("method", "")
            if site.data.get("guarded"):
                runs = "forward" if method == "forward" else f"{method}, which forward runs,"
                message = (f"{what} in {runs} hard-codes a CUDA device: the torch.cuda.is_available() guard only hides it "
                           "from a CPU run, and on a CUDA machine it ignores where the model was moved")
            else:
                message = f"{what} hard-codes a CUDA device: the model cannot run on CPU-only machines or follow .to()"
            module, extra = astutil.attribution(site.modules)
            if module is None and site.node is not None:
                module = ""  # a graph node of the root's forward
            yield self.finding(
                message + astutil.instances_note(site.modules),
                fix="take the device from an input or parameter (x.device) and let the caller move the model with .to()",
                module=module,
                node=site.node,
                location=site.location,
                evidence={"code": what, "forward": bool(site.data.get("forward")), "guarded": bool(site.data.get("guarded")), **extra},
            )
