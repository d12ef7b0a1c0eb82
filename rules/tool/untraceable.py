from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from torchaudit.report import Finding, Severity
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext


@register
class UntraceableModel(Rule):
    """
    What it finds:
        Models that plain `torch.fx.symbolic_trace` cannot trace. The finding names the
        tracer of the chain that was used instead (transformers' fx tracer, `torch.export`
        non-strict, or forward hooks), why each earlier one failed, and what the fallback loses.

    Why it matters:
        Graph rules and the dynamic stage see the model at the fallback's granularity: an
        aten-level graph after `torch.export`, or only leaf-module calls with forward hooks,
        where functional calls between modules are invisible.

    Example:
        A `forward` with `if h.mean() > 0.5:` cannot be traced symbolically; torchaudit falls
        back to forward hooks and compares module outputs instead of single ops.

    Fix:
        Nothing is required for a scan. To get the full graph, move data-dependent Python
        control flow out of `forward` (or into `torch.where`/`torch.cond`).

    Fact:
        `torch.fx.Proxy.__bool__` raises `TraceError` ("symbolically traced variables cannot be
        used as inputs to control flow"), torch/fx/proxy.py.
    """

    code = "TA901"
    severity = Severity.INFO
    title = "Model not traceable by torch.fx.symbolic_trace"

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        from torchaudit.analyzer.trace.tracing import LOST

        graph = ctx.graph
        if graph is not None and graph.tracer in ("fx", "transformers-fx"):
            return  # transformers' tracer yields the same fx-level graph: nothing is lost
        if graph is None:
            failures = ctx.trace_failures
            yield self.finding(
                "no tracer could trace the model: " + "; ".join(failures),
                fix="graph rules and comparisons did not run; pass example inputs (--input-shape, --inputs) "
                "or make forward traceable",
                module="",
                evidence={"tracer": None, "failures": failures},
            )
            return
        reasons = [n for n in graph.notes if not n.startswith("lost:")]
        yield self.finding(
            f"torch.fx.symbolic_trace could not trace the model, so the {graph.tracer} tracer was used "
            f"({'; '.join(reasons)}); lost: {LOST[graph.tracer]}",
            fix=_fix(reasons),
            module="",
            evidence={"tracer": graph.tracer, "failures": reasons},
        )


def _fix(reasons: list[str]) -> str:
    """What to change for the plain fx graph, from why fx itself failed."""
    fx = next((r.removeprefix("fx: ") for r in reasons if r.startswith("fx: ")), "")
    if any(s in fx for s in ("control flow", "cannot be iterated", "'len' is not supported")):  # torch/fx/proxy.py
        how = "move the data-dependent Python control flow out of forward (torch.where/torch.cond)"
    elif fx:
        how = f"fix what stopped torch.fx.symbolic_trace: {fx}"
    else:
        how = "make forward traceable by torch.fx.symbolic_trace"
    return f"nothing to fix for a scan; for the op-level fx graph, {how}"


@register
class RuleCrashed(Rule):
    """
    What it finds:
        A rule that raised an exception while it looked at this model. The engine catches it,
        reports the rule's code and the exception's one-line summary, and runs the other rules.

    Why it matters:
        The scan is incomplete: whatever that rule checks was not checked for this model.

    Example:
        A rule reading a custom module's attribute that a third-party class computes lazily
        and that raises on access.

    Fix:
        Report the model to torchaudit; meanwhile `--ignore CODE` silences the broken rule.
    """

    code = "TA902"
    severity = Severity.WARNING
    title = "A rule raised an exception"
    # emitted by the engine itself (rules/engine.py, _crash), not by a check of its own


@register
class ComparisonFailed(Rule):
    """
    What it finds:
        A comparison of the dynamic stage that could not run or raised: its reason, and which
        comparison. The other comparisons and the report go on.

    Why it matters:
        Nothing was learned from that comparison; a gate that relies on it is not protected. So a
        comparison you asked for (`--compare NAME`, `--reference/--candidate`) that did not run is
        an error and fails the gate; one that `--compare auto` chose is a warning.

    Example:
        `--compare reload` on a model whose factory returned a copy (so no constructor call of
        its class was captured), whose class needs constructor arguments, and whose file has no
        `fresh_model()` function to build a fresh instance.

    Fix:
        Follow the reason given (add `fresh_model()`, pass example inputs, ...), or drop that
        comparison with `--compare`. A comparison that raised inside torchaudit itself asks
        for a bug report; one where the model's own code raised is TA904.
    """

    code = "TA903"
    severity = Severity.WARNING
    title = "A comparison could not run"
    needs = frozenset({"dynamic"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        for failure in ctx.comparison_failures:
            name = failure.comparison
            # a check the user asked for that did not run fails the gate; under auto it is a warning
            severity = Severity.ERROR if failure.explicit else Severity.WARNING
            if failure.kind == "skipped":
                yield self.finding(f"comparison {name!r} could not run: {failure.reason}",
                                   fix="follow the reason given, or drop it from --compare", evidence={"comparison": name},
                                   severity=severity)
            elif failure.kind == "tool":
                yield self.finding(f"comparison {name!r} raised {failure.reason} inside torchaudit; the other comparisons went on",
                                   fix=f"report the model to torchaudit; --compare without {name} skips it",
                                   evidence={"comparison": name, "exception": failure.exception}, severity=severity)


@register
class ModelRaisedInComparison(Rule):
    """
    What it finds:
        A comparison during which the model's own code raised (its `forward`, or code it
        calls, in one of the comparison's configurations). The finding points at the line of
        the model's code where it raised; the other comparisons and the report go on.

    Why it matters:
        The model fails in a configuration the comparison runs (another dtype, train mode, one
        sample of a batch, a fresh instance): if that configuration is one you ship, the model
        breaks there; if not, nothing was learned from that comparison. In a comparison you asked
        for (`--compare NAME`, `--reference/--candidate`) it is an error that fails the gate.

    Example:
        A `forward` that asserts `x.dtype == torch.float32` raises in the float64 reference
        of the `dtype` comparison; a model whose `forward` needs a batch of at least two
        raises in the per-sample side of `batch`.

    Fix:
        Make the model work in that configuration, or drop the comparison with `--compare`
        (or pick configurations with `--reference/--candidate`).
    """

    code = "TA904"
    severity = Severity.WARNING
    title = "The model's own code raised during a comparison"
    needs = frozenset({"dynamic"})

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        for failure in ctx.comparison_failures:
            if failure.kind == "model":
                yield self.finding(
                    f"the model's code raised {failure.reason} during comparison {failure.comparison!r}; "
                    "the other comparisons went on",
                    fix=f"make the model run in that comparison's configurations, or drop {failure.comparison} from --compare",
                    location=failure.location,
                    module="",
                    evidence={"comparison": failure.comparison, "exception": failure.exception},
                    severity=Severity.ERROR if failure.explicit else Severity.WARNING,
                )
