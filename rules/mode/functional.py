"""Functional dropout and batch_norm calls and their ``training`` argument (TA101, TA102):
the shared base of both rules. No torch import, so the rules run in ``torchaudit lint``."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, ClassVar, Iterable

from torchaudit.report import Finding, Location
from torchaudit.rules import astutil, callgraph, sites
from torchaudit.rules.engine import Rule

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext
    from torchaudit.analyzer.sources import SourceFile, SourceView
    from torchaudit.analyzer.trace.graph import GraphNode

F = "torch.nn.functional."
# functional dropouts and the default of their `training` argument (torch/nn/functional.py):
# dropout/dropout1d/2d/3d default to True, alpha_dropout/feature_alpha_dropout to False
DROPOUT_DEFAULTS = {
    F + "dropout": True,
    F + "dropout1d": True,
    F + "dropout2d": True,
    F + "dropout3d": True,
    F + "alpha_dropout": False,
    F + "feature_alpha_dropout": False,
}
TRAINING_POSITION = {name: 2 for name in DROPOUT_DEFAULTS} | {F + "batch_norm": 5}
# the classes torch.nn exports that subclass _DropoutNd and _BatchNorm (torch/nn/modules/dropout.py,
# torch/nn/modules/batchnorm.py), by name so that lint needs no torch; a test checks them against the installed torch
DROPOUT_MODULES = frozenset({"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"})
BATCHNORM_MODULES = frozenset({"BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LazyBatchNorm1d", "LazyBatchNorm2d",
                               "LazyBatchNorm3d", "SyncBatchNorm"})
# aten ops of an export graph, with the index of their `train` argument
ATEN_TRAIN = {
    "aten.dropout.default": 2,
    "aten.feature_dropout.default": 2,
    "aten.alpha_dropout.default": 2,
    "aten.feature_alpha_dropout.default": 2,
    "aten.batch_norm.default": 5,
}


def short(name: str) -> str:
    return "F." + name.rsplit(".", 1)[-1]


def training_arg(call: ast.Call, name: str) -> tuple[str, ast.expr | None]:
    """How a source call passes ``training``: "missing", "true", "false", "expr" or "unknown"."""
    expr = astutil.argument(call, "training", TRAINING_POSITION[name])
    if expr is None:
        return ("unknown" if astutil.has_star_kwargs(call) else "missing"), None
    if astutil.is_constant(expr, True):
        return "true", expr
    if astutil.is_constant(expr, False):
        return "false", expr
    return "expr", expr


def module_class(call: ast.Call, src: SourceFile) -> str | None:
    """``Dropout`` for ``nn.Dropout(0.2)(x)``: the name of the torch.nn class of a module
    built and called in one expression; else None."""
    if not isinstance(call.func, ast.Call):
        return None
    name = astutil.call_name(call.func, src) or ""
    if name.count(".") != 2 or not name.startswith("torch.nn."):
        return None
    cls = name.removeprefix("torch.nn.")
    return cls if cls[:1].isupper() else None


def written(call: ast.Call, src: SourceFile) -> str:
    """A call as the user wrote it, arguments elided: ``F.dropout``, ``nn.Dropout(...)(x)``."""
    func = call.func
    if isinstance(func, ast.Call):
        inner = ast.get_source_segment(src.text, func.func) or ast.unparse(func.func)
        args = ", ".join(ast.get_source_segment(src.text, a) or ast.unparse(a) for a in call.args)
        return f"{inner}(...)({args if len(args) <= 20 else '...'})"
    return " ".join((ast.get_source_segment(src.text, func) or ast.unparse(func)).split())


def seen_call(node: GraphNode, name: str, ctx: AuditContext) -> tuple[str, str, Location | None, ast.Call | None]:
    """What the user wrote where the graph traced the functional ``name``: ``(form, text,
    location, call)``. ``form`` is "function" (the functional itself, through any import
    alias), "module" (a torch.nn module built and called in one expression,
    ``nn.Dropout(0.2)(x)``) or "op" (nothing recognizable on the line: the text is the traced
    op, and there is no call)."""
    family = BATCHNORM_MODULES if name.endswith("batch_norm") else DROPOUT_MODULES
    found: tuple[str, str, Location | None, ast.Call | None] | None = None
    for src, call in astutil.calls_at(ctx, node.location):
        if astutil.call_name(call, src) == name:
            return "function", written(call, src), astutil.location(src, call), call
        cls = module_class(call, src)
        if found is None and cls in family:
            found = ("module", written(call, src), astutil.location(src, call), call)
    return found or ("op", node.op_name if node.target.startswith("aten.") else short(name), node.location, None)


def graph_training_on(node: GraphNode, ctx: AuditContext) -> tuple[str, bool] | None:
    """For a functional dropout / batch_norm graph node: (its functional name, whether it ran
    with ``training`` true in the eval-mode trace)."""
    if node.op != "call_function" or (node.target not in TRAINING_POSITION and node.target not in ATEN_TRAIN):
        return None
    fx = sites.fx_node(ctx, node.name)
    if fx is None:
        return None
    if node.target in TRAINING_POSITION:
        pos = TRAINING_POSITION[node.target]
        value = fx.kwargs.get("training", fx.args[pos] if len(fx.args) > pos else DROPOUT_DEFAULTS.get(node.target, False))
        return node.target, value is True
    if node.target in ATEN_TRAIN:
        pos = ATEN_TRAIN[node.target]
        value = fx.args[pos] if len(fx.args) > pos else fx.kwargs.get("train", fx.kwargs.get("training"))
        name = F + ("batch_norm" if "batch_norm" in node.target else node.target.split(".")[1])
        return name, value is True
    return None


class FunctionalTrainingRule(Rule):
    """Base of TA101/TA102: functional dropout / batch_norm calls whose ``training`` argument
    is of one of ``kinds``: "missing" (left at a default of True), "true" (a literal),
    "expr" (anything else that was true in the eval-mode trace). Graph nodes and the source
    calls behind them are merged by line; source calls the graph did not show are added."""

    kinds: ClassVar[frozenset[str]]

    def __init__(self) -> None:
        self.sites = sites.Sites()

    def report(self, site: sites.Site) -> Finding:
        raise NotImplementedError

    def check_node(self, node: GraphNode, ctx: AuditContext) -> Iterable[Finding]:
        hit = graph_training_on(node, ctx)
        if hit is None or not hit[1] or (node.module_type or "").startswith("torch.nn."):
            return ()  # off, or inside torch's own module code (BatchNorm without running stats is TA104's)
        name = hit[0]
        form, text, loc, call = seen_call(node, name, ctx)
        kind = "expr"
        if form == "function" and call is not None:
            kind = training_arg(call, name)[0]
            kind = "expr" if kind == "unknown" else kind
        elif form == "module":
            kind = "module"  # a module built in forward starts in training mode; eval() never reaches it
        if kind in ("expr", "module") and name not in DROPOUT_DEFAULTS:
            return ()  # batch_norm fed an expression or built in forward: only a literal is known to be wrong here
        if kind in self.kinds:
            self.sites.add(loc, [node.module], node=node.name, name=name, target=node.target, call=text, kind=kind)
        return ()

    def check_source(self, node: ast.AST, source: SourceFile, ctx: SourceView) -> Iterable[Finding]:
        assert isinstance(node, ast.Call)  # source_nodes: calls only
        name = astutil.call_name(node, source)
        if name not in TRAINING_POSITION:
            return self._module_call(node, source, ctx)
        owner = astutil.enclosing_class(node, source)
        paths = astutil.instances(ctx, source, owner) if owner else []
        if not paths:
            return ()
        kind = training_arg(node, name)[0]
        if kind == "missing" and not DROPOUT_DEFAULTS.get(name, False):
            return ()  # alpha_dropout and batch_norm default to training=False
        loc = astutil.location(source, node)
        if kind in self.kinds - {"expr"} and not self.sites.has(loc):  # an expression: only the graph knows
            self.sites.add(loc, paths, name=name, target=name, call=written(node, source), kind=kind)
        return ()

    def _module_call(self, node: ast.Call, source: SourceFile, ctx: SourceView) -> Iterable[Finding]:
        """``nn.Dropout(0.2)(x)`` in forward-time code: a dropout module that starts in training
        mode and that ``eval()`` never reaches (a trace that saw it merged by line)."""
        cls = module_class(node, source)
        if "module" not in self.kinds or cls not in DROPOUT_MODULES:
            return ()
        owner = astutil.class_method(node, source)
        if owner is None or not callgraph.forward_paths(ctx, source, node):
            return ()
        paths = astutil.instances(ctx, source, owner[0])
        loc = astutil.location(source, node)
        if paths and not self.sites.has(loc):
            self.sites.add(loc, paths, name=F + "dropout", target=f"torch.nn.{cls}", call=written(node, source), kind="module")
        return ()

    def finish(self, ctx: SourceView) -> Iterable[Finding]:
        for site in self.sites:
            yield self.report(site)
