"""Recordings from the command line: ``record``, the checks of ``scan --against`` and ``compare``.

``record`` prepares the model as ``scan`` does (target, inputs, checkpoint; settings from
``[tool.torchaudit]``) and streams one run to a bundle (``analyzer/record/``). ``scan --against
RUN`` refuses a recording of another model, graph or inputs before any comparison runs
(:func:`check_against`) and puts both environments, side by side, in the report's
``recording`` key. ``compare RUN_A RUN_B`` builds a :class:`Report` from two recordings alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from torchaudit.errors import OptionError
from torchaudit.report import Config, GraphInfo, Report
from torchaudit.settings import Settings

if TYPE_CHECKING:
    from torchaudit.analyzer.pipeline import Prepared
    from torchaudit.analyzer.record.bundle import Bundle


def record(
    target: str,
    output: str,
    *,
    settings: Settings | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    mode: str = "eval",
    granularity: str = "op",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Record ``target`` (a TARGET string or an ``nn.Module``) into the folder ``output``; the
    manifest written. ``dtype`` ``None``: the model's own."""
    from torchaudit.analyzer.dtypes import dtype_name, model_dtype
    from torchaudit.analyzer.pipeline import prepare
    from torchaudit.analyzer.record.bundle import RecordingError
    from torchaudit.analyzer.record.record import GRANULARITIES, record_run

    s = settings or Settings()
    if s.meta:
        raise RecordingError("a recording under --meta would hold no values (the model is built without weights)",
                             "record without --meta, on a machine with the memory for the model")
    if granularity not in GRANULARITIES:
        raise OptionError(f"unknown --granularity {granularity!r}", "use op or module")
    Config.parse(f"{device}:{dtype or 'float32'}:{mode}", "--device/--dtype/--mode")  # the syntax, before the model loads
    prepared = prepare(target, input_shapes=s.input_shape or None, inputs_spec=s.inputs, checkpoint=s.checkpoint,
                       trust_checkpoint=s.trust_checkpoint, seed=s.seed, traced=False)
    if prepared.inputs is None:
        raise OptionError("no example inputs, so nothing can be recorded",
                          "pass --input-shape (e.g. --input-shape 8,16) or --inputs path.py:fn, or define example_inputs()")
    cfg = Config.parse(f"{device}:{dtype or dtype_name(model_dtype(prepared.model, prepared.inputs))}:{mode}",
                       "--device/--dtype/--mode")
    return record_run(prepared.model, prepared.inputs, cfg, output, target=prepared.target_info(), seed=s.seed,
                      granularity=granularity, progress=progress)


def check_against(path: str, prepared: Prepared, settings: Settings) -> dict[str, Any]:
    """Refuse a recording that is not of this model, graph and inputs (exit 2); else the
    report's ``recording`` section: both environments and what differs between them."""
    from torchaudit.analyzer.record.bundle import RecordingError, open_bundle
    from torchaudit.analyzer.record.compare import live_config
    from torchaudit.analyzer.record.match import check_graph, check_inputs, check_model
    from torchaudit.analyzer.record.record import fingerprint, inputs_facts

    if settings.static_only:
        raise OptionError("--against and --static-only contradict each other", "drop one of them")
    if prepared.meta:
        raise RecordingError("--against needs tensor values, and --meta builds the model without them", "drop --meta")
    where = f"recording {path}"
    bundle = open_bundle(path)
    manifest = bundle.manifest
    ours = fingerprint(prepared.model)
    check_model(where, manifest["fingerprint"], ours)
    if prepared.inputs is None:
        raise OptionError(f"{where}: no example inputs here to compare with",
                          f"pass the inputs it was made with: {manifest['inputs']['describe']}")
    check_inputs(where, manifest["inputs"], inputs_facts(prepared.inputs))
    check_graph(where, manifest, prepared.graph)
    live = live_config(manifest, Config.parse(settings.candidate, "--candidate") if settings.candidate else None)
    return recording_section(bundle, live, settings.seed, ours["weights"])


def recording_section(bundle: Bundle, live: Config | None, seed: int, live_weights: str | None,
                      live_environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's ``recording`` key (README, Recordings): what was recorded, both environments
    and their differences; ``live`` ``None`` for two recordings, with the second's environment
    as ``live_environment``."""
    from torchaudit.analyzer.record.environment import environment_diff, run_environment

    m = bundle.manifest
    env_live = live_environment if live_environment is not None else run_environment(live.device, seed) if live is not None else {}
    weights = m["fingerprint"]["weights"]
    return {
        "path": str(bundle.path),
        "created": m.get("created"),
        "tool": m.get("tool"),
        "granularity": m["granularity"],
        "config": m["config"],
        "live_config": live.to_dict() if live is not None else None,
        "bytes": bundle.bytes,
        "weights_match": weights == live_weights if live_weights is not None else None,
        "environments": {"recorded": m["environment"], "live": env_live},
        "environment_diff": environment_diff(m["environment"], env_live),
    }


def compare_recordings(run_a: str, run_b: str, *, settings: Settings | None = None, command: str | None = None) -> Report:
    """Two recordings, no model: the ``recordings`` comparison (B against A) and its findings."""
    import torch.nn as nn

    from torchaudit.analyzer.context import AuditContext
    from torchaudit.analyzer.environment import environment
    from torchaudit.analyzer.record.compare import compare_recordings as run_compare
    from torchaudit.analyzer.record.side import recorded_graph
    from torchaudit.rules.engine import catalogue, run_rules

    s = settings or Settings()
    result, a, b = run_compare(run_a, run_b, atol=s.atol, rtol=s.rtol)
    graph = recorded_graph(b.manifest)
    ctx = AuditContext(model=nn.Module(), target=None, inputs=None, graph=graph, environment=environment(),
                       comparisons=(result,))
    findings, _ = run_rules(ctx, select=["TA706", "TA708", "TA709"])
    fp = b.manifest["fingerprint"]
    section = {**recording_section(a, None, 0, fp["weights"], b.manifest["environment"]),
               "path_b": str(b.path), "labels": ["RUN_A", "RUN_B"]}
    target = {**(b.manifest.get("target") or {}), "spec": (b.manifest.get("target") or {}).get("spec"),
              "model_class": fp["model_class"], "checkpoint": None, "recordings": [str(a.path), str(b.path)]}
    return Report(
        target=target, environment=environment(),
        graph=GraphInfo(tracer=graph.tracer, nodes=len(graph), modules=0, parameters=int(fp["parameters"]), buffers=0),
        findings=findings, comparisons=[result], fail_on=s.fail_on, command=command, extras={"recording": section},
        graph_outline=graph.outline(), rules=catalogue(),
    )


def human_bytes(n: int) -> str:
    """``1536`` -> ``1.5 KB``."""
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            break
    return f"{size:.1f} {unit}"


def summary_line(manifest: dict[str, Any], output: str) -> str:
    """What ``record`` prints last: where the recording went and its size."""
    nodes = sum(1 for n in manifest["graph"]["nodes"] if "value" in n)
    cfg = manifest["config"]
    return (f"recorded {nodes} {'module calls' if manifest['granularity'] == 'module' else 'nodes'} "
            f"({manifest['tensors']} tensors) of {manifest['fingerprint']['model_class']} on "
            f"{cfg['device']}:{cfg['dtype']}:{cfg['mode']} to {Path(output)}: {human_bytes(int(manifest['bytes']))} "
            f"in {len(manifest['shards'])} shard{'s' if len(manifest['shards']) != 1 else ''}")
