"""``torchaudit.diff``: two checkpoints of one model, tensor by tensor, then where activations part.

The result is an ordinary :class:`Report` whose ``comparisons`` hold the ``checkpoints``
comparison and whose JSON carries ``tensor_diff`` beside it.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch.nn as nn

from torchaudit.report import Report
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
    """``settings`` holds the options (inputs, input-shape, trust-checkpoint, atol, rtol, seed,
    fail-on); keyword arguments, where given, win over it. The scan-only keys are not read."""
    from torchaudit.analyzer.compare.diff import compare_checkpoints, load_pair, tensor_diff
    from torchaudit.analyzer.compare.stage import untouched
    from torchaudit.analyzer.pipeline import prepare
    from torchaudit.rules.engine import catalogue, run_rules

    s = (settings or Settings()).replace(input_shape=input_shapes, inputs=inputs_spec, trust_checkpoint=trust_checkpoint,
                                         atol=atol, rtol=rtol, seed=seed, fail_on=fail_on)
    prepared = prepare(model, example_inputs, input_shapes=s.input_shape or None, inputs_spec=s.inputs, traced=False)
    module, inputs = prepared.model, prepared.inputs
    with untouched(module):
        ckpt_a, model_a = load_pair(module, checkpoint_a, s.trust_checkpoint)
        ckpt_b, model_b = load_pair(module, checkpoint_b, s.trust_checkpoint)
        rows = tensor_diff(ckpt_a.tensors or {}, ckpt_b.tensors or {})
        why = None
        for ck, m in ((ckpt_a, model_a), (ckpt_b, model_b)):
            if m is None:
                status = ck.loaded_into_model
                why = f"{ck.path} does not load into the model with strict=True ({status.error if status else 'unknown'})"
        result = compare_checkpoints(model_a, model_b, inputs, why, atol=s.atol, rtol=s.rtol, seed=s.seed)
    prepared = prepared.retraced(model_b if model_b is not None else module)
    ctx = prepared.context(comparisons=[result])
    findings, _ = run_rules(ctx, select=["TA7"])
    info = prepared.target_info()
    info["checkpoint"] = None
    info["checkpoints"] = [str(ckpt_a.path), str(ckpt_b.path)]
    return Report(
        target=info, environment=ctx.environment, graph=prepared.graph_info(), findings=findings,
        comparisons=[result], fail_on=s.fail_on, command=command,
        extras={"tensor_diff": [r.to_dict() for r in rows]}, rules=catalogue(),
    )
