"""TA603: falling back from ``weights_only=True`` to ``False`` in an ``except``."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules import astutil
from torchaudit.rules.engine import Rule, register
from torchaudit.rules.security.common import is_torch_load, unsafe_fallback

if TYPE_CHECKING:
    from torchaudit.analyzer.sources import SourceFile, SourceView


@register
class WeightsOnlyFallback(Rule):
    """
    What it finds:
        A `torch.load(..., weights_only=False)` in an `except` handler of a `try` whose body
        loads with `weights_only=True` (or with the default).

    Why it matters:
        The safe load fails exactly when the file contains globals outside the allowlist,
        i.e. when it is malicious; the fallback then unpickles it without restriction.
        Whoever controls the file chooses the unsafe path.

    Example:
        `try: sd = torch.load(p, weights_only=True)` /
        `except Exception: sd = torch.load(p, weights_only=False)`. The silent look-alike
        re-raises, or retries with `weights_only=True` under `torch.serialization.safe_globals`.

    Fix:
        Remove the fallback; allow the specific classes the checkpoint needs with
        `torch.serialization.add_safe_globals([...])`, or convert it to `.safetensors` once.

    Fact:
        `torch.serialization.load` (torch/serialization.py) unpickles with
        `torch._weights_only_unpickler`, which raises `UnpicklingError` for any global outside
        `_get_allowed_globals()` and the safe globals (torch/_weights_only_unpickler.py).
    """

    code = "TA603"
    severity = Severity.ERROR
    title = "Unsafe fallback to weights_only=False"
    needs = frozenset({"source"})  # the Python source is enough: runs in lint too

    def check_source(self, node: ast.AST, source: SourceFile, ctx: SourceView) -> Iterable[Finding]:
        if not is_torch_load(node, source):
            return
        assert isinstance(node, ast.Call)
        safe = unsafe_fallback(node, source)
        if safe is None:
            return
        module, extra = astutil.owner_attribution(ctx, source, node)
        yield self.finding(
            f"torch.load falls back to weights_only=False when the weights-only load (line {safe.lineno}) fails: "
            "a malicious file picks the unsafe path",
            fix="remove the fallback and allow the needed classes with torch.serialization.add_safe_globals",
            module=module,
            location=astutil.location(source, node),
            evidence={"safe_load_line": safe.lineno, **extra},
        )
