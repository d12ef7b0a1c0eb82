"""``torchaudit.diff``: two checkpoints of one model, tensor by tensor, then where activations part.

The result is an ordinary :class:`Report`: the checkpoint rules' findings on each file (labelled
A or B), the ``checkpoints`` comparison in ``comparisons``, and ``tensor_diff`` beside it in the
JSON. Every renderer (HTML, Markdown, SARIF, JSON, terminal) takes it as it takes a scan's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch.nn as nn

from torchaudit.errors import OptionError
from torchaudit.report import ComparisonResult, Config, Finding, Report
from torchaudit.settings import Settings

if TYPE_CHECKING:
    from torchaudit.analyzer.load.inputs import ExampleInputs


def diff(
    model: nn.Module | str,
    checkpoint_a: str,
    checkpoint_b: str | None = None,
    example_inputs: Any = None,
    *,
    settings: Settings | None = None,
    input_shapes: Sequence[str] | None = None,
    inputs_spec: str | None = None,
    trust_checkpoint: bool | None = None,
    static_only: bool | None = None,
    stream_weights: bool | None = None,
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

    A checkpoint is a file, a ``save_pretrained`` directory or a ``*.index.json`` (sharded).
    ``diff(DIR_A, DIR_B)`` (no ``checkpoint_b``) diffs two ``save_pretrained`` directories with
    the model built from A's ``config.json``; a B whose ``config.json`` names another class or
    other shapes is ``TargetError``, other differences of the configs are notes of the comparison.

    ``static_only`` runs the tensor table and the checkpoint rules only: the model is built on
    the meta device and neither file is loaded into it (the comparison is skipped, and so are the
    rules that need tensor values), so memory stays near the largest pair of tensors.
    Render it with ``report.write(path)`` or ``torchaudit.reports``' renderers. ``settings``
    holds the options (inputs, input-shape, trust-checkpoint, static-only, atol, rtol, seed,
    fail-on); keyword arguments, where given, win over it. The scan-only keys are not read.
    """
    from torchaudit.analyzer.compare.diff import load_pair, tensor_diff, why_not_loaded
    from torchaudit.analyzer.compare.stage import untouched
    from torchaudit.analyzer.load.meta import describe_skips
    from torchaudit.analyzer.pipeline import prepare
    from torchaudit.rules.engine import catalogue, run_rules

    s = (settings or Settings()).replace(input_shape=input_shapes, inputs=inputs_spec, trust_checkpoint=trust_checkpoint,
                                         static_only=static_only, stream_weights=stream_weights, atol=atol, rtol=rtol, seed=seed,
                                         fail_on=fail_on)
    notes: tuple[str, ...] = ()
    if checkpoint_b is None:  # diff(DIR_A, DIR_B): the model comes from A's config.json
        model, checkpoint_a, checkpoint_b, notes = _from_first_dir(model, checkpoint_a)
    from torchaudit.analyzer.load.weight_files import plan_for

    # streamed weights are for the comparison; --static-only runs none
    stream = plan_for([Path(checkpoint_a), Path(checkpoint_b)], False if s.static_only else s.stream_weights)
    prepared = prepare(model, example_inputs, input_shapes=s.input_shape or None, inputs_spec=s.inputs, traced=False,
                       seed=s.seed, meta=s.static_only, own_weights=False, stream=stream is not None)
    module, inputs = prepared.model, prepared.inputs
    findings: list[Finding] = []
    with untouched(module):
        ckpt_a, model_a = load_pair(module, checkpoint_a, s.trust_checkpoint)
        ckpt_b, model_b = load_pair(module, checkpoint_b, s.trust_checkpoint)
        skipped_rules: dict[str, str] = {}
        for label, ckpt, loaded in (("A", ckpt_a, model_a), ("B", ckpt_b, model_b)):
            # the same rules, on the same evidence, as ``scan --checkpoint`` of this file
            ctx = dataclasses.replace(prepared, model=loaded if loaded is not None else module, checkpoint=ckpt).context()
            found, skipped_rules = run_rules(ctx, select=checkpoint_rule_codes())
            findings += [labelled(f, label) for f in found]
        rows = tensor_diff(ckpt_a.tensors or {}, ckpt_b.tensors or {})
        streaming = None
        if stream is not None and prepared.skeleton is not None:
            from torchaudit.analyzer.compare.diff import compare_streamed
            from torchaudit.analyzer.compare.streaming import Streaming
            from torchaudit.analyzer.load.weight_files import WeightFiles

            streaming = Streaming(prepared.skeleton, WeightFiles(Path(checkpoint_a)), stream, other=WeightFiles(Path(checkpoint_b)))
            result = compare_streamed(streaming, inputs, atol=s.atol, rtol=s.rtol, seed=s.seed)
        else:
            result = _comparison(module, model_a, model_b, inputs, why_not_loaded(ckpt_b) or why_not_loaded(ckpt_a), s)
    if notes:
        result = dataclasses.replace(result, notes=result.notes + notes)
    if not s.static_only:
        prepared = prepared.retraced(model_b if model_b is not None else module)
    ctx = prepared.context(comparisons=[result])
    dynamic, _ = run_rules(ctx, select=["TA7"])
    findings = sorted(findings + dynamic, key=lambda f: -f.severity.rank)  # stable: A before B within a severity
    info = prepared.target_info()
    info["checkpoint"] = None
    info["checkpoints"] = [str(ckpt_a.path), str(ckpt_b.path)]
    extras: dict[str, Any] = {"tensor_diff": [r.to_dict() for r in rows]}
    if streaming is not None:
        extras["streamed_weights"] = streaming.to_dict()
        extras["skipped_rules"] = describe_skips(skipped_rules, streamed=True)
    elif skipped_rules:
        values = {code: STATIC_ONLY_SKIP for code, need in skipped_rules.items() if need == "values"}
        extras["skipped_rules"] = {**describe_skips(skipped_rules), **values}
    return Report(
        target=info, environment=ctx.environment, graph=prepared.graph_info(), findings=findings,
        comparisons=[result], fail_on=s.fail_on, command=command, extras=extras, rules=catalogue(),
        graph_outline=prepared.graph.outline() if prepared.graph is not None else (), module_types=prepared.module_types(),
    )


STATIC_ONLY_SKIP = "needs tensor values; --static-only builds the model on the meta device, without them"
STATIC_ONLY = "--static-only: the tensor table and the checkpoint rules only; neither checkpoint was loaded into the model"


def _comparison(module: nn.Module, model_a: nn.Module | None, model_b: nn.Module | None, inputs: ExampleInputs | None,
                why_not: str | None, s: Settings) -> ComparisonResult:
    """The ``checkpoints`` comparison, or why it did not run (``--static-only``)."""
    from torchaudit.analyzer.compare.comparisons import skipped
    from torchaudit.analyzer.compare.diff import compare_checkpoints
    from torchaudit.analyzer.dtypes import dtype_name, model_dtype

    if s.static_only:
        cfg = Config("cpu", dtype_name(model_dtype(module, inputs)), "eval")
        return skipped("checkpoints", STATIC_ONLY, cfg, cfg)
    return compare_checkpoints(model_a, model_b, inputs, why_not, atol=s.atol, rtol=s.rtol, seed=s.seed)


def _from_first_dir(a: nn.Module | str, b: str) -> tuple[str, str, str, tuple[str, ...]]:
    """``(target, A, B, notes)`` of ``diff DIR_A DIR_B``: the target is A's directory, and B's
    ``config.json`` (where B has one) must describe the same model (:func:`same_model`)."""
    from torchaudit.analyzer.load.transformers_dir import CONFIG, config_folder, same_model

    if not isinstance(a, str):
        raise OptionError("diff of a model takes two checkpoints, A and B", "pass the model, A and B")
    if not Path(a).is_dir() or not (Path(a) / CONFIG).is_file():
        what = "is not a directory" if not Path(a).is_dir() else f"has no {CONFIG}"
        raise OptionError(
            f"diff with two paths builds the model from A's {CONFIG}, and {a} {what}",
            "pass TARGET A B (the model, then both checkpoints), or two save_pretrained directories",
        )
    folder_b = config_folder(Path(b))
    return a, a, b, (same_model(Path(a), folder_b) if folder_b is not None else ())


def checkpoint_rule_codes() -> list[str]:
    """The rules ``scan --checkpoint`` adds: every rule that reads the checkpoint (TA3xx, TA601)."""
    from torchaudit.rules.engine import load_rules

    return [code for code, cls in load_rules().items() if "checkpoint" in cls.needs]


def labelled(finding: Finding, label: str) -> Finding:
    """A checkpoint finding of file ``label`` (A or B): said at the start of its message and in its evidence."""
    return dataclasses.replace(finding, message=f"checkpoint {label}: {finding.message}",
                               evidence={"checkpoint": label, **finding.evidence})
