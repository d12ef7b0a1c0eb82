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
    from torchaudit.analyzer.context import AuditContext
    from torchaudit.analyzer.compare.diff import compare_checkpoints, load_pair, tensor_diff
    from torchaudit.analyzer.compare.stage import untouched
    from torchaudit.analyzer.environment import environment
    from torchaudit.analyzer.load.inputs import from_value, resolve_inputs
    from torchaudit.analyzer.load.target import load_target
    from torchaudit.analyzer.trace.tracing import TraceError, trace_model
    from torchaudit.api import _graph_info, _target_info
    from torchaudit.errors import OptionError
    from torchaudit.report import FAIL_ON_CHOICES
    from torchaudit.rules.engine import run_rules

    if fail_on not in FAIL_ON_CHOICES:
        raise OptionError(f"--fail-on {fail_on!r} is not one of {', '.join(FAIL_ON_CHOICES)}", "pick one of those")
    target = load_target(model) if isinstance(model, str) else None
    module = target.model if target is not None else model
    if not isinstance(module, nn.Module):
        raise OptionError(f"diff() takes an nn.Module or a TARGET string, not {type(model).__name__}", "pass the model")
    with untouched(module):
        if example_inputs is not None:
            inputs = from_value(example_inputs, "the example_inputs argument")
        else:
            inputs = resolve_inputs(module, target.module if target else None, inputs_spec, list(input_shapes or []))
        ckpt_a, model_a = load_pair(module, checkpoint_a, trust_checkpoint)
        ckpt_b, model_b = load_pair(module, checkpoint_b, trust_checkpoint)
        rows = tensor_diff(ckpt_a.tensors or {}, ckpt_b.tensors or {})
        why = None
        for ck, m in ((ckpt_a, model_a), (ckpt_b, model_b)):
            if m is None:
                status = ck.loaded_into_model
                why = f"{ck.path} does not load into the model with strict=True ({status.error if status else 'unknown'})"
        result = compare_checkpoints(model_a, model_b, inputs, why, atol=atol, rtol=rtol, seed=seed)
    ctx = AuditContext(model=module, target=target, inputs=inputs, graph=None, environment=environment())
    try:
        ctx.graph = trace_model(model_b if model_b is not None else module, inputs)
    except TraceError as exc:
        ctx.trace_failures = str(exc).split("; ")
    ctx.options["comparisons"] = [result]
    findings, _ = run_rules(ctx, select=["TA7"])
    info = _target_info(ctx)
    info["checkpoint"] = None
    info["checkpoints"] = [str(ckpt_a.path), str(ckpt_b.path)]
    return Report(
        target=info, environment=ctx.environment, graph=_graph_info(ctx), findings=findings,
        comparisons=[result], fail_on=fail_on, command=command,
        extras={"tensor_diff": [r.to_dict() for r in rows]},
    )
