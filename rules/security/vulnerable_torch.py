"""TA604: the installed torch has a known ``weights_only`` bypass."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext

FIXED_IN = (2, 6, 0)


def version_tuple(version: str) -> tuple[int, ...] | None:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    return tuple(int(g or 0) for g in m.groups()) if m else None


@register
class WeightsOnlyBypassTorch(Rule):
    """
    What it finds:
        The torch that runs this scan is older than 2.6.0, whose `weights_only=True` loader can
        be bypassed (CVE-2025-32434, GHSA-53q9-r3pm-6pq6).

    Why it matters:
        On these versions `torch.load(..., weights_only=True)` is not a security boundary: a
        crafted checkpoint can still run code.

    Example:
        torch 2.5.1 in the environment; torch 2.6.0 or later is silent.

    Fix:
        Upgrade to torch >= 2.6.0, or load only `.safetensors` files from untrusted sources.

    Fact:
        The advisory for CVE-2025-32434 lists torch <= 2.5.1 as affected and 2.6.0 as patched;
        the environment's version comes from `torch.__version__`.
    """

    code = "TA604"
    severity = Severity.WARNING
    title = "torch version with a weights_only bypass"
    needs = frozenset({"environment"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        version = str(ctx.environment.get("torch", ""))
        parsed = version_tuple(version)
        if parsed is not None and parsed < FIXED_IN:
            yield self.finding(
                f"torch {version} has a known weights_only bypass (CVE-2025-32434): weights_only=True does not make "
                "untrusted checkpoints safe",
                fix="upgrade to torch >= 2.6.0, or load only .safetensors files from untrusted sources",
                module=None,
                evidence={"torch": version, "fixed_in": "2.6.0"},
            )
