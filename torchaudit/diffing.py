"""``torchaudit.diff``: two checkpoints of one model, tensor by tensor, then where activations part.

The result is an ordinary :class:`Report` whose ``comparisons`` hold the ``checkpoints``
comparison and whose JSON carries ``tensor_diff`` beside it.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch.nn as nn

from torchaudit.report import Report


def diff(
    model: nn.Module | str,
    checkpoint_a: str,
    checkpoint_b: str,
    example_inputs: Any = None,
    *,
    input_shapes: Sequence[str] | None = None,
    inputs_spec: str | None = None,
    trust_checkpoint: bool = False,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    fail_on: str = "error",
    command: str | None = None,
) -> Report:
    from torchaudit.analyzer.compare.diff import compare_checkpoints, load_pair, tensor_diff
    from torchaudit.analyzer.compare.stage import untouched
    from torchaudit.analyzer.pipeline import prepare
    from torchaudit.errors import OptionError
    from torchaudit.report import FAIL_ON_CHOICES
    from torchaudit.rules.engine import catalogue, run_rules

    if fail_on not in FAIL_ON_CHOICES:
        raise OptionError(f"--fail-on {fail_on!r} is not one of {', '.join(FAIL_ON_CHOICES)}", "pick one of those")
    prepared = prepare(model, example_inputs, input_shapes=input_shapes, inputs_spec=inputs_spec, traced=False, seed=seed)
    module, inputs = prepared.model, prepared.inputs
    with untouched(module):
        ckpt_a, model_a = load_pair(module, checkpoint_a, trust_checkpoint)
        ckpt_b, model_b = load_pair(module, checkpoint_b, trust_checkpoint)
        rows = tensor_diff(ckpt_a.tensors or {}, ckpt_b.tensors or {})
        why = None
        for ck, m in ((ckpt_a, model_a), (ckpt_b, model_b)):
            if m is None:
                status = ck.loaded_into_model
                why = f"{ck.path} does not load into the model with strict=True ({status.error if status else 'unknown'})"
        result = compare_checkpoints(model_a, model_b, inputs, why, atol=atol, rtol=rtol, seed=seed)
    prepared = prepared.retraced(model_b if model_b is not None else module)
    ctx = prepared.context(comparisons=[result])
    findings, _ = run_rules(ctx, select=["TA7"])
    info = prepared.target_info()
    info["checkpoint"] = None
    info["checkpoints"] = [str(ckpt_a.path), str(ckpt_b.path)]
    return Report(
        target=info, environment=ctx.environment, graph=prepared.graph_info(), findings=findings,
        comparisons=[result], fail_on=fail_on, command=command,
        extras={"tensor_diff": [r.to_dict() for r in rows]}, rules=catalogue(),
    )
