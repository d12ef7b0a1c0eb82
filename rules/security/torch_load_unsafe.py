"""TA602: ``torch.load`` with ``weights_only=False`` or without ``weights_only``."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil
from torchaudit.rules.engine import Rule, register
from torchaudit.rules.security.common import is_torch_load, unsafe_fallback, weights_only

if TYPE_CHECKING:
    from torchaudit.analyzer.sources import SourceFile, SourceView


@register
class TorchLoadWithoutWeightsOnly(Rule):
    """
    What it finds:
        A `torch.load(...)` call in the source with `weights_only=False`, or without a
        `weights_only` argument. (A `weights_only=False` fallback inside an `except` is
        TA603's, not reported twice.)

    Why it matters:
        `weights_only=False` runs the full unpickler: a checkpoint can execute arbitrary code
        when it is loaded. Without the argument the behaviour depends on the torch version
        that runs the code: before 2.6 the default was `False`.

    Example:
        `torch.load("model.pt")` or `torch.load(path, weights_only=False)`. The silent
        look-alike is `torch.load(path, weights_only=True)`.

    Fix:
        Pass `weights_only=True` (and `torch.serialization.add_safe_globals([...])` for the
        few extra types a checkpoint needs), or store weights as `.safetensors`.

    Fact:
        `torch.serialization.load` (torch/serialization.py) defaults `weights_only` to `None`,
        resolved to True since torch 2.6 unless `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD` is set;
        with False it calls `pickle_module.load` with no restriction on globals.
    """

    code = "TA602"
    severity = Severity.WARNING
    title = "torch.load without weights_only=True"
    needs = frozenset({"source"})  # the Python source is enough: runs in lint too

    def check_source(self, node: ast.AST, source: SourceFile, ctx: SourceView) -> Iterable[Finding]:
        if not is_torch_load(node, source):
            return
        assert isinstance(node, ast.Call)
        state = weights_only(node)
        if state not in ("false", "missing") or unsafe_fallback(node, source) is not None:
            return
        module, extra = astutil.owner_attribution(ctx, source, node)
        message = (
            "torch.load is called with weights_only=False: loading the file can run arbitrary code"
            if state == "false"
            else "torch.load is called without weights_only: before torch 2.6 that unpickles arbitrary objects"
        )
        yield self.finding(
            message,
            fix="pass weights_only=True (add_safe_globals for extra types), or save weights as .safetensors",
            module=module,
            location=astutil.location(source, node),
            evidence={"weights_only": state, **extra},
        )
