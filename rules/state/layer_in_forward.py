"""TA206: a torch.nn layer with parameters or buffers built inside ``forward``."""

from __future__ import annotations

import ast
import pkgutil
import warnings
from typing import TYPE_CHECKING, Iterable

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil, callgraph
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext, SourceFile


def torch_module_class(name: str | None) -> type[nn.Module] | None:
    """The torch.nn module class a dotted call name resolves to (``torch.nn.Linear``)."""
    if not name or not name.startswith("torch.nn."):
        return None
    try:
        found = pkgutil.resolve_name(name)
    except (ImportError, AttributeError, ValueError):
        return None
    return found if isinstance(found, type) and issubclass(found, nn.Module) else None


def has_state(cls: type[nn.Module], call: ast.Call) -> bool:
    """Whether the module ``call`` builds holds parameters or buffers: built on the meta
    device from literal arguments when it has only those, else whether its class
    initializes parameters (``reset_parameters``, as every torch.nn layer with weights does)."""
    try:
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg is not None}
        literal = len(kwargs) == len(call.keywords)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        literal = False
    if literal:
        try:
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's advice about the layer's options is not ours to print
                module = cls(*args, **kwargs)
            return any(True for _ in module.parameters()) or any(True for _ in module.buffers())
        except Exception:  # noqa: BLE001 - arguments torch refuses: fall back to the class
            pass
    return hasattr(cls, "reset_parameters") or hasattr(cls, "_reset_parameters")


def _registered(call: ast.Call, src: SourceFile) -> bool:
    """``self.proj = nn.Linear(...)``: assigned to the module, so registered as a submodule."""
    parent = astutil.index(src).parents.get(call)
    return isinstance(parent, (ast.Assign, ast.AnnAssign)) and any(
        astutil.is_self_attr(t) for t in (parent.targets if isinstance(parent, ast.Assign) else [parent.target])
    )


@register
class LayerBuiltInForward(Rule):
    """
    What it finds:
        A torch.nn layer that holds parameters or buffers (`nn.Linear`, `nn.Conv2d`,
        `nn.LayerNorm`, `nn.BatchNorm1d`, ...) constructed in `forward` or a method `forward`
        calls, and not assigned to `self`: `y = nn.Linear(8, 8)(x)`. Layers without state
        (`nn.ReLU()(x)`) are silent; a dropout module built there is TA101's.

    Why it matters:
        A module built in `forward` is not a submodule of the model: its parameters are drawn
        afresh on every call, are not in `parameters()` (the optimizer never trains them),
        not in `state_dict()` (never saved or loaded), and not moved by `.to()`; it starts in
        training mode and `eval()` never reaches it. The output changes from call to call.

    Example:
        `return nn.Linear(self.dim, 10)(h)` in `forward`. The silent look-alike builds
        `self.head = nn.Linear(dim, 10)` in `__init__` and calls `self.head(h)`.

    Fix:
        Build the layer once in `__init__` and assign it to `self` (use `nn.LazyLinear` when
        its input size is only known at the first call).

    Fact:
        `Module.__setattr__` registers a module as a child only when it is assigned to an
        attribute of a module, and `Module.named_parameters`/`state_dict`/`train` walk the
        children only (torch/nn/modules/module.py); `Linear.__init__` calls
        `reset_parameters()`, which draws new initial weights (torch/nn/modules/linear.py).
    """

    code = "TA206"
    severity = Severity.ERROR
    title = "Layer built inside forward"

    def check_source(self, node: ast.AST, source: SourceFile, ctx: AuditContext) -> Iterable[Finding]:
        assert isinstance(node, ast.Call)
        cls = torch_module_class(astutil.call_name(node, source))
        if cls is None or _registered(node, source):
            return
        owner = astutil.class_method(node, source)
        if owner is None or not callgraph.forward_paths(ctx, source, node):
            return
        paths = astutil.instances(ctx, source, owner[0])
        if not paths or not has_state(cls, node):
            return
        name = f"nn.{cls.__name__}"
        mode = "; in training mode for good, it normalizes with each batch's own statistics" if issubclass(cls, _BatchNorm) else ""
        module, extra = astutil.attribution(paths)
        yield self.finding(
            f"{name} is built in {owner[1].name} on every call: a new layer each time, whose freshly initialized "
            f"parameters are never trained, never saved by state_dict() and not moved by .to(){mode}" + astutil.instances_note(paths),
            fix=f"build the {name} once in __init__ (self.<name> = {name}(...)) and call that submodule in forward",
            module=module,
            location=astutil.location(source, node),
            evidence={"layer": f"torch.nn.{cls.__name__}", "method": owner[1].name, **extra},
        )

