"""TA103: ``self.training`` steers control flow."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil, callgraph
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.sources import SourceFile, SourceView


@register
class TrainingControlFlow(Rule):
    """
    What it finds:
        An `if`, conditional expression or `while` in a module's forward code (`forward` or
        code it calls, followed from `forward`: rules/callgraph.py) whose condition reads
        `self.training`. The same test in `__init__`, in a helper only `__init__` calls, or in
        a `train()` override is silent.

    Why it matters:
        The module does different things in train and eval mode, and an fx trace freezes
        whichever branch was taken at trace time: a graph traced in train mode and exported
        keeps the training branch forever.

    Example:
        `if self.training: x = x + noise`. The silent look-alike passes the flag as data:
        `F.dropout(x, p, training=self.training)`.

    Fix:
        Make the mode difference explicit and trace/export in the mode you deploy
        (`model.eval()` first); prefer modules (`nn.Dropout`) or `training=self.training`
        arguments over Python branches.

    Fact:
        `symbolic_trace` evaluates Python conditionals on non-proxy values once, at trace time
        (`torch.fx.Tracer.trace` runs `forward` with proxies; `self.training` is a plain bool).
    """

    code = "TA103"
    severity = Severity.INFO  # RULES.md: a mode branch is ordinary PyTorch; what the trace froze is worth knowing
    title = "self.training steers control flow"
    needs = frozenset({"source"})  # the Python source is enough: runs in lint too
    source_nodes = (ast.If, ast.IfExp, ast.While)

    def check_source(self, node: ast.AST, source: SourceFile, ctx: SourceView) -> Iterable[Finding]:
        assert isinstance(node, (ast.If, ast.IfExp, ast.While))
        if not any(astutil.is_self_attr(n, "training") for n in ast.walk(node.test)):
            return
        paths = callgraph.forward_paths(ctx, source, node)  # forward's code, not set-up or train()
        if not paths:
            return
        owner = astutil.method_of(node, source)
        where = f"{owner[0].name}.{owner[1].name}" if owner is not None else getattr(astutil.enclosing_function(node, source), "name", "")
        module, extra = astutil.attribution(paths)
        kind = {ast.If: "an if", ast.IfExp: "a conditional expression", ast.While: "a while loop"}[type(node)]
        yield self.finding(
            f"{where} branches on self.training ({kind}): train and eval mode run different code,"
            " and an fx trace keeps only the branch taken" + astutil.instances_note(paths),
            fix="trace and export in the mode you deploy (model.eval() first), or pass training=self.training to a functional op",
            module=module,
            location=astutil.location(source, node),
            evidence=extra,
        )
