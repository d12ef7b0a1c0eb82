"""TA103: ``self.training`` steers control flow."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext, SourceFile

_NOT_FORWARD = {"__init__", "train", "eval", "extra_repr", "__repr__", "reset_parameters"}


@register
class TrainingControlFlow(Rule):
    """
    What it finds:
        An `if`, conditional expression or `while` in a module's forward code (`forward` or a
        method it calls) whose condition reads `self.training`.

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
    source_nodes = (ast.If, ast.IfExp, ast.While)

    def check_source(self, node: ast.AST, source: SourceFile, ctx: AuditContext) -> Iterable[Finding]:
        assert isinstance(node, (ast.If, ast.IfExp, ast.While))
        if not any(astutil.is_self_attr(n, "training") for n in ast.walk(node.test)):
            return
        owner = astutil.method_of(node, source)
        if owner is None or owner[1].name in _NOT_FORWARD:
            return
        paths = astutil.instances(ctx, source, owner[0])
        if not paths:
            return
        module, extra = astutil.attribution(paths)
        kind = {ast.If: "an if", ast.IfExp: "a conditional expression", ast.While: "a while loop"}[type(node)]
        yield self.finding(
            f"{owner[0].name}.{owner[1].name} branches on self.training ({kind}): train and eval mode run different code,"
            " and an fx trace keeps only the branch taken" + astutil.instances_note(paths),
            fix="trace and export in the mode you deploy (model.eval() first), or pass training=self.training to a functional op",
            module=module,
            location=astutil.location(source, node),
            evidence=extra,
        )
