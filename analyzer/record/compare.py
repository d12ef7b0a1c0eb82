"""The ``record`` comparison (``scan --against RUN``) and two recordings compared (``compare``).

``record``: the reference is the recording, the candidate the live model in the live
configuration (``--candidate``, else the recording's dtype and mode on its device when this
machine has it, on the CPU otherwise). The lockstep engine runs unchanged over a
:class:`~torchaudit.analyzer.record.side.RecordedSide`: total error per node, local error from
the live op fed the recorded inputs, inherited error as usual.

``compare RUN_A RUN_B``: no model, so no op can run: total error per node, and the first
divergence by total error (noted in the result: local error needs a live side).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from torchaudit.analyzer.compare.comparisons import DTYPES, Options, Skip, placed, progress_for, result_from, side_inputs
from torchaudit.analyzer.compare.lockstep import LockstepResult, lockstep, record
from torchaudit.analyzer.compare.metrics import Tolerance
from torchaudit.analyzer.compare.pair import REF_ONLY, align
from torchaudit.analyzer.compare.sides import FxSide, RngStream
from torchaudit.analyzer.dtypes import model_dtype
from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.record.bundle import Bundle, RecordingError, open_bundle
from torchaudit.analyzer.record.match import check_graph, check_inputs, check_model
from torchaudit.analyzer.record.side import RecordedSide, recorded_graph
from torchaudit.analyzer.trace.tracing import trace_model
from torchaudit.report import ComparisonResult, Config

LOCAL_NEEDS_LIVE = ("two recordings, no live model: the error per node is the total error, and the first divergence is "
                    "the first node whose total error is beyond tolerance; local error needs a live side "
                    "(torchaudit scan TARGET --against RUN)")


def live_config(manifest: dict[str, Any], candidate: Config | None) -> Config:
    """The live side's configuration: ``candidate`` if given, else the recording's dtype and
    mode on its device if this machine has it (CUDA), else on the CPU."""
    if candidate is not None:
        return candidate
    rec = Config(**manifest["config"])
    device = rec.device if rec.device == "cpu" or torch.cuda.is_available() else "cpu"
    return Config(device, rec.dtype, rec.mode)


def compare_record(model: nn.Module, inputs: ExampleInputs, opts: Options) -> ComparisonResult:
    """``COMPARISONS["record"]``: the live model against the recording at ``opts.against``."""
    if opts.against is None:
        raise Skip("needs a recording: pass --against RUN (a folder written by 'torchaudit record')")
    bundle = open_bundle(opts.against)
    manifest = bundle.manifest
    live = live_config(manifest, opts.candidate)
    if live.device.startswith("cuda") and not torch.cuda.is_available():
        raise Skip("the live configuration is on CUDA, which is not available here; pass --candidate cpu:DTYPE")
    cand_dtype = DTYPES[live.dtype]
    tol = Tolerance.for_dtype(cand_dtype, opts.atol, opts.rtol)
    own = model_dtype(model, inputs)
    work, ins = placed(model, live, own), side_inputs(inputs, live, own)
    seed = int(manifest.get("seed", opts.seed))
    if manifest["granularity"] == "module":
        from torchaudit.analyzer.record.modules import compare_modules

        run = compare_modules(bundle, work, ins, live, seed, tol, cand_dtype)
    else:
        run = _compare_ops(bundle, work, ins, live, seed, tol, cand_dtype, opts)
    try:
        return result_from("record", Config(**manifest["config"]), live, tol, run)
    finally:
        bundle.close()


def _compare_ops(bundle: Bundle, work: nn.Module, ins: ExampleInputs, live: Config, seed: int, tol: Tolerance,
                 cand_dtype: torch.dtype, opts: Options) -> LockstepResult:
    g_live = trace_model(work, ins, mode=live.mode, share_parameters=True)
    if g_live.gm is None:
        raise Skip("the live model traces only at module granularity here; record it with --granularity module")
    g_rec = recorded_graph(bundle.manifest)
    alias = align(g_rec, g_live)
    ref = RecordedSide(bundle, alias)
    cand = FxSide(g_live, ins, RngStream(seed, live.device), work.forward)
    run = lockstep(ref, cand, tol, cand_dtype, g_live, progress=progress_for(opts, "record"))
    if alias:
        only = sum(1 for v in alias.values() if v.startswith(REF_ONLY))
        run.notes.insert(0, f"the recorded graph and the live one differ ({len(g_rec)} and {len(g_live)} nodes): nodes were "
                            f"matched by module, op and occurrence ({only} recorded nodes without a counterpart, not compared)")
    return run


def compare_recordings(path_a: str, path_b: str, atol: float | None = None, rtol: float | None = None) -> tuple[ComparisonResult, Bundle, Bundle]:
    """Recording B against recording A, node by node, by total error (see the module docstring)."""
    a, b = open_bundle(path_a, "RUN_A"), open_bundle(path_b, "RUN_B")
    ma, mb = a.manifest, b.manifest
    check_model("RUN_B", ma["fingerprint"], mb["fingerprint"])
    check_inputs("RUN_B", ma["inputs"], mb["inputs"])
    if ma["granularity"] != mb["granularity"]:
        raise RecordingError(f"RUN_A was recorded at {ma['granularity']} granularity, RUN_B at {mb['granularity']}",
                             "record both with the same --granularity")
    g_b = recorded_graph(mb)
    g_a = check_graph("RUN_B", ma, g_b) if ma["granularity"] == "op" else recorded_graph(ma)
    side_a, side_b = RecordedSide(a, align(g_a, g_b)), RecordedSide(b)
    cfg_a, cfg_b = Config(**ma["config"]), Config(**mb["config"])
    cand_dtype = DTYPES[cfg_b.dtype]
    tol = Tolerance.for_dtype(cand_dtype, atol, rtol)
    result = LockstepResult(graph=g_b)
    for name in g_b.order:
        if name not in side_b or name not in side_a:
            continue
        side_a.run(name)
        side_b.run(name)
        y_b = side_b.value(name)
        y_a = side_a.value(name)
        if y_a is None or y_b is None:
            continue
        node = g_b.node(name)
        record(result, g_b, name, node.op, node.target, y_a, y_b, None, tol, cand_dtype, k=_fan_in(side_b, name))
        side_a.free(name)
        side_b.free(name)
    result.notes.append(LOCAL_NEEDS_LIVE)
    return result_from("recordings", cfg_a, cfg_b, tol, result), a, b


def _fan_in(side: RecordedSide, name: str) -> int:
    """The largest dim of the node's floating inputs, from the manifest (nothing is loaded)."""
    k = 1
    for m in side.input_names(name):
        stored = side.entries.get(m, {}).get("value") or {}
        for leaf in stored.get("leaves", []):
            if "tensor" in leaf and str(leaf.get("dtype", "")).startswith(("float", "bfloat")) and leaf["shape"]:
                k = max(k, max(leaf["shape"]))
    return k
