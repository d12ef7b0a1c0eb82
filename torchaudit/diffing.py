"""``torchaudit.diff``: two checkpoints of one model, tensor by tensor, then where activations part.

The result is an ordinary :class:`Report`: the checkpoint rules' findings on each file (labelled
A or B), the ``checkpoints`` comparison in ``comparisons``, and ``tensor_diff`` beside it in the
JSON. Every renderer (HTML, Markdown, SARIF, JSON, terminal) takes it as it takes a scan's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch.nn as nn

from torchaudit.report import Finding, Report
from torchaudit.settings import Settings


def diff(
    model: nn.Module | str,
    checkpoint_a: str,
    checkpoint_b: str,
    example_inputs: Any = None,
    *,
    settings: Settings | None = None,
    input_shapes: Sequence[str] | None = None,
    inputs_spec: str | None = None,
    trust_checkpoint: bool | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int | None = None,
    fail_on: str | None = None,
    command: str | None = None,
) -> Report:
    """Diff two checkpoints of one model (an ``nn.Module`` or a TARGET string) and return the
    :class:`Report`: the checkpoint rules (TA3xx, TA601) run on each file as ``scan
    --checkpoint`` runs them, each finding labelled ``A`` or ``B`` (``evidence["checkpoint"]``
    and the start of its message); ``extras["tensor_diff"]`` holds the per-tensor table and
    ``comparisons`` the ``checkpoints`` comparison. ``report.exit_code`` is 1 when a finding is
    at or above ``fail_on`` (a file that does not load into the model is one), as for ``scan``.
    A file that is not unpickled (unsafe globals, a whole pickled module without
    ``trust_checkpoint``) leaves nothing to diff: ``CheckpointError``.
    Render it with ``report.write(path)`` or ``torchaudit.reports``' renderers. ``settings``
    holds the options (inputs, input-shape, trust-checkpoint, atol, rtol, seed, fail-on); keyword
    arguments, where given, win over it. The scan-only keys are not read.
    """
    from torchaudit.analyzer.compare.diff import compare_checkpoints, load_pair, tensor_diff, why_not_loaded
    from torchaudit.analyzer.compare.stage import untouched
    from torchaudit.analyzer.pipeline import prepare
    from torchaudit.rules.engine import catalogue, run_rules

    s = (settings or Settings()).replace(input_shape=input_shapes, inputs=inputs_spec, trust_checkpoint=trust_checkpoint,
                                         atol=atol, rtol=rtol, seed=seed, fail_on=fail_on)
    prepared = prepare(model, example_inputs, input_shapes=s.input_shape or None, inputs_spec=s.inputs, traced=False,
                       seed=s.seed)
    module, inputs = prepared.model, prepared.inputs
    findings: list[Finding] = []
    with untouched(module):
        ckpt_a, model_a = load_pair(module, checkpoint_a, s.trust_checkpoint)
        ckpt_b, model_b = load_pair(module, checkpoint_b, s.trust_checkpoint)
        for label, ckpt, loaded in (("A", ckpt_a, model_a), ("B", ckpt_b, model_b)):
            # the same rules, on the same evidence, as ``scan --checkpoint`` of this file
            ctx = dataclasses.replace(prepared, model=loaded if loaded is not None else module, checkpoint=ckpt).context()
            found, _ = run_rules(ctx, select=checkpoint_rule_codes())
            findings += [labelled(f, label) for f in found]
        rows = tensor_diff(ckpt_a.tensors or {}, ckpt_b.tensors or {})
        why = why_not_loaded(ckpt_b) or why_not_loaded(ckpt_a)
        result = compare_checkpoints(model_a, model_b, inputs, why, atol=s.atol, rtol=s.rtol, seed=s.seed)
    prepared = prepared.retraced(model_b if model_b is not None else module)
    ctx = prepared.context(comparisons=[result])
    dynamic, _ = run_rules(ctx, select=["TA7"])
    findings = sorted(findings + dynamic, key=lambda f: -f.severity.rank)  # stable: A before B within a severity
    info = prepared.target_info()
    info["checkpoint"] = None
    info["checkpoints"] = [str(ckpt_a.path), str(ckpt_b.path)]
    return Report(
        target=info, environment=ctx.environment, graph=prepared.graph_info(), findings=findings,
        comparisons=[result], fail_on=s.fail_on, command=command,
        extras={"tensor_diff": [r.to_dict() for r in rows]}, rules=catalogue(),
        graph_outline=prepared.graph.outline() if prepared.graph is not None else (), module_types=prepared.module_types(),
    )


def checkpoint_rule_codes() -> list[str]:
    """The rules ``scan --checkpoint`` adds: every rule that reads the checkpoint (TA3xx, TA601)."""
    from torchaudit.rules.engine import load_rules

    return [code for code, cls in load_rules().items() if "checkpoint" in cls.needs]


def labelled(finding: Finding, label: str) -> Finding:
    """A checkpoint finding of file ``label`` (A or B): said at the start of its message and in its evidence."""
    return dataclasses.replace(finding, message=f"checkpoint {label}: {finding.message}",
                               evidence={"checkpoint": label, **finding.evidence})
