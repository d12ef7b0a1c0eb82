"""The named comparisons of the dynamic stage (DESIGN.md, "Comparisons").

| name          | reference                  | candidate                              |
|---------------|----------------------------|----------------------------------------|
| `dtype`       | CPU float64                | CPU, the model's dtype                 |
| `device`      | CPU                        | CUDA (skipped without CUDA)            |
| `reload`      | the model after exercise   | fresh instance + `load_state_dict`     |
| `mode`        | eval                       | train                                  |
| `determinism` | the candidate config       | the same config again (other seed)     |
| `batch`       | each sample alone          | the whole batch                        |
| `custom`      | `--reference CFG`          | `--candidate CFG`                      |
| `record`      | a recording (`--against`)  | the live model (`--candidate CFG`)     |

Every comparison works on copies of the user's model. One that cannot run here returns a
``skipped`` result with its reason and the flag that fixes it.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from torchaudit.analyzer.trace.graph import ModelGraph
from torchaudit.analyzer.dtypes import dtype_name, model_dtype, more_precise
from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.load.target import LoadedTarget
from torchaudit.analyzer.compare.lockstep import LockstepResult
from torchaudit.analyzer.compare.metrics import Tolerance
from torchaudit.analyzer.compare.pair import SideSpec, run_pair
from torchaudit.analyzer.compare.streaming import SideWeights, Streaming, placed_skeleton
from torchaudit.analyzer.load.weight_files import WeightFiles
from torchaudit.analyzer.values import map_tensors
from torchaudit.report import DTYPE_ALIASES, ComparisonResult, Config, Contribution, Status

AUTO = ("dtype", "device", "reload", "mode", "determinism", "batch")
DTYPES = {alias: getattr(torch, name) for alias, name in DTYPE_ALIASES.items()}  # configuration dtype -> torch


class Skip(Exception):
    """A comparison that cannot run here: the reason, with the flag that fixes it (without the
    comparison's name: reports put the name beside it)."""


@dataclass
class Options:
    seed: int = 0
    atol: float | None = None
    rtol: float | None = None
    progress: Callable[[str, int, int], None] | None = None
    target: LoadedTarget | None = None  # for reload's fresh instance
    reference: Config | None = None
    candidate: Config | None = None
    graph: ModelGraph | None = None  # the scan's own trace of the model (eval, its dtype and device)
    streaming: Streaming | None = None  # --stream-weights: the model is a skeleton, weights come from files
    against: str | None = None  # a recording (``torchaudit record``): the reference of ``record``


def convert_inputs(inputs: ExampleInputs, device: str, dtype: torch.dtype | None) -> ExampleInputs:
    def conv(v: torch.Tensor) -> torch.Tensor:
        if dtype is not None and v.is_floating_point():
            return v.to(device=device, dtype=dtype)
        return v.to(device=device)

    ex = inputs.clone()
    return ExampleInputs(map_tensors(conv, ex.args), map_tensors(conv, ex.kwargs), inputs.source)


def placed(model: nn.Module, cfg: Config, own: torch.dtype) -> nn.Module:
    """A copy of ``model`` on ``cfg``'s device and dtype, in its mode. In the model's own dtype
    ``own`` its tensors keep their dtypes: a model with float64 layers behind a float32 input
    runs as its user runs it, not cast whole."""
    work = copy.deepcopy(model)
    dtype = DTYPES[cfg.dtype]
    work.to(device=cfg.device) if dtype == own else work.to(device=cfg.device, dtype=dtype)
    return work.train(cfg.mode == "train")


def side_inputs(inputs: ExampleInputs, cfg: Config, own: torch.dtype) -> ExampleInputs:
    """The inputs on ``cfg``'s device, floating ones in its dtype (left as given in the model's own)."""
    dtype = DTYPES[cfg.dtype]
    return convert_inputs(inputs, cfg.device, None if dtype == own else dtype)


def side_spec(model: nn.Module, inputs: ExampleInputs, cfg: Config, own: torch.dtype, seed: int, opts: Options,
              weights: WeightFiles | None = None) -> SideSpec:
    """One side of a comparison in configuration ``cfg``: a placed copy of the model and its
    inputs; with streamed weights, a placed copy of the skeleton that reads ``weights`` (by
    default the run's checkpoint) per use."""
    if opts.streaming is None:
        return SideSpec(placed(model, cfg, own), side_inputs(inputs, cfg, own), cfg.mode, seed, cfg.device,
                        graph=as_scanned(model, inputs, cfg, opts))
    work = placed_skeleton(model, cfg.device, DTYPES[cfg.dtype], own, cfg.mode)
    source = SideWeights(model, work, weights or opts.streaming.weights, cfg.device, opts.streaming.modules_read)
    return SideSpec(work, side_inputs(inputs, cfg, own), cfg.mode, seed, cfg.device, weights=source)


def as_scanned(model: nn.Module, inputs: ExampleInputs, cfg: Config, opts: Options) -> ModelGraph | None:
    """The scan's own graph, for a side that ``placed`` leaves as the scan traced it: eval mode,
    and every floating tensor of the model and its inputs already on ``cfg``'s device and dtype."""
    if opts.graph is None or cfg.mode != "eval":
        return None
    device, dtype = torch.device(cfg.device), DTYPES[cfg.dtype]
    tensors = list(model.parameters()) + list(model.buffers()) + inputs.tensors()
    if all(t.device == device and (t.dtype == dtype or not t.is_floating_point()) for t in tensors):
        return opts.graph
    return None


def result_from(name: str, ref: Config, cand: Config, tol: Tolerance, run: LockstepResult, **extra: Any) -> ComparisonResult:
    """The comparison's result. ``matched`` only when no node diverged **and** the outputs are
    within tolerance; outputs outside it with no node to blame are ``accumulated``, with the
    nodes that add most of the error."""
    status = Status.MATCHED
    contributors: tuple[Contribution, ...] = ()
    if run.first_divergence is not None or run.first_nonfinite is not None:
        status = Status.DIVERGED
    elif run.output and not run.output.get("close", True):
        status, contributors = Status.ACCUMULATED, run.contributors()
    return ComparisonResult(
        name=name, reference=ref, candidate=cand, status=status,
        tolerance=tol.to_dict(), output=run.output, first_divergence=run.first_divergence,
        first_nonfinite=run.first_nonfinite, nodes=tuple(run.nodes), notes=tuple(run.notes),
        contributors=contributors, **extra,
    )


def planned(name: str, model: nn.Module, inputs: ExampleInputs | None, opts: Options) -> tuple[Config, Config] | None:
    """The configurations comparison ``name`` runs (or would have run), without running it, so
    that a skipped or failed comparison is labelled ``cpu:float32:eval vs cuda:float32:eval``
    rather than with defaults; ``None`` where they are not known (a custom pair without both)."""
    dt = dtype_name(model_dtype(model, inputs))
    same = Config("cpu", dt, "eval")
    pairs = {
        "dtype": (Config("cpu", "float64", "eval"), same),
        "device": (same, Config("cuda", dt, "eval")),
        "mode": (same, Config("cpu", dt, "train")),
        "determinism": (opts.candidate or same, opts.candidate or same),
        "batch": (same, same),
        "reload": (same, same),
    }
    if name == "custom":
        return (opts.reference, opts.candidate) if opts.reference and opts.candidate else None
    return pairs.get(name)


def skipped(name: str, reason: str, ref: Config | None = None, cand: Config | None = None) -> ComparisonResult:
    return ComparisonResult(name=name, reference=ref or Config(), candidate=cand or Config(),
                            status=Status.SKIPPED, skipped_reason=reason)


def progress_for(opts: Options, name: str) -> Callable[[int, int], None] | None:
    """``opts.progress`` for the comparison ``name``, or ``None`` without a progress bar."""
    progress = opts.progress
    return (lambda done, total: progress(name, done, total)) if progress is not None else None


def compare_configs(name: str, model: nn.Module, inputs: ExampleInputs, ref: Config, cand: Config, opts: Options,
            seeds: tuple[int, int] | None = None) -> ComparisonResult:
    """Run the model under two configurations (device, dtype, mode) in lockstep."""
    for cfg in (ref, cand):
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise Skip("CUDA is not available here (torch.cuda.is_available() is False); run on a machine with a GPU")
    cand_dtype = DTYPES[cand.dtype]
    tol = Tolerance.for_dtype(cand_dtype, opts.atol, opts.rtol)
    s_ref, s_cand = seeds or (opts.seed, opts.seed)
    own = model_dtype(model, inputs)
    a = side_spec(model, inputs, ref, own, s_ref, opts)
    b = side_spec(model, inputs, cand, own, s_cand, opts)
    run, _ = run_pair(a, b, tol, cand_dtype, explain=more_precise(DTYPES[ref.dtype], cand_dtype),
                      arbiter=ref.dtype == "float64" and cand.dtype != "float64", progress=progress_for(opts, name))
    return result_from(name, ref, cand, tol, run)


def compare_dtype(model: nn.Module, inputs: ExampleInputs, opts: Options) -> ComparisonResult:
    dt = model_dtype(model, inputs)
    if dt == torch.float64:
        raise Skip("the model is already float64, so there is no higher-precision reference; use --reference/--candidate")
    return compare_configs("dtype", model, inputs, Config("cpu", "float64", "eval"), Config("cpu", dtype_name(dt), "eval"), opts)


def compare_device(model: nn.Module, inputs: ExampleInputs, opts: Options) -> ComparisonResult:
    dt = dtype_name(model_dtype(model, inputs))
    return compare_configs("device", model, inputs, Config("cpu", dt, "eval"), Config("cuda", dt, "eval"), opts)


def compare_mode(model: nn.Module, inputs: ExampleInputs, opts: Options) -> ComparisonResult:
    dt = dtype_name(model_dtype(model, inputs))
    return compare_configs("mode", model, inputs, Config("cpu", dt, "eval"), Config("cpu", dt, "train"), opts)


def compare_determinism(model: nn.Module, inputs: ExampleInputs, opts: Options) -> ComparisonResult:
    """The same config twice; the runs draw different random numbers, as two real runs would."""
    cfg = opts.candidate or Config("cpu", dtype_name(model_dtype(model, inputs)), "eval")
    return compare_configs("determinism", model, inputs, cfg, cfg, opts, seeds=(opts.seed, opts.seed + 1))


def compare_custom(model: nn.Module, inputs: ExampleInputs, opts: Options) -> ComparisonResult:
    if opts.reference is None or opts.candidate is None:
        raise Skip("needs both --reference CFG and --candidate CFG (device:dtype[:mode])")
    return compare_configs("custom", model, inputs, opts.reference, opts.candidate, opts)


def split_batch(inputs: ExampleInputs) -> list[ExampleInputs] | None:
    """One ExampleInputs per sample, when every tensor input shares a leading batch of >= 2."""
    tensors = inputs.tensors()
    sizes = {t.shape[0] for t in tensors if t.dim() > 0}
    if not tensors or len(sizes) != 1 or any(t.dim() == 0 for t in tensors):
        return None
    n = sizes.pop()
    if n < 2:
        return None

    def sample(i: int) -> ExampleInputs:
        def pick(v: torch.Tensor) -> torch.Tensor:
            return v[i : i + 1].clone()

        return ExampleInputs(map_tensors(pick, inputs.args), map_tensors(pick, inputs.kwargs), inputs.source)

    return [sample(i) for i in range(n)]


def compare_batch(model: nn.Module, inputs: ExampleInputs, opts: Options) -> ComparisonResult:
    samples = split_batch(inputs)
    dt = model_dtype(model, inputs)
    cfg = Config("cpu", dtype_name(dt), "eval")
    if samples is None:
        raise Skip("needs example inputs whose tensors share a batch of at least 2 along dim 0; "
                   "pass e.g. --input-shape 4,16")
    tol = Tolerance.for_dtype(dt, opts.atol, opts.rtol)
    a = side_spec(model, inputs, cfg, dt, opts.seed, opts)
    a = dataclasses.replace(a, graph=None, samples=samples)
    b = side_spec(model, inputs, cfg, dt, opts.seed, opts)
    run, _ = run_pair(a, b, tol, dt, progress=progress_for(opts, "batch"))
    ref_cfg = Config("cpu", cfg.dtype, "eval")
    return result_from("batch", ref_cfg, cfg, tol, run)


def compare_reload(model: nn.Module, inputs: ExampleInputs, opts: Options) -> ComparisonResult:
    if opts.streaming is not None:
        raise Skip("it saves and reloads the whole state_dict, which needs the weights in memory; "
                   "run it without --stream-weights")
    from torchaudit.analyzer.compare.reload import compare_reload as run_reload

    return run_reload(model, inputs, opts)


def compare_record(model: nn.Module, inputs: ExampleInputs, opts: Options) -> ComparisonResult:
    from torchaudit.analyzer.record.compare import compare_record as run_record

    return run_record(model, inputs, opts)


COMPARISONS: dict[str, Callable[[nn.Module, ExampleInputs, Options], ComparisonResult]] = {
    "dtype": compare_dtype,
    "device": compare_device,
    "reload": compare_reload,
    "mode": compare_mode,
    "determinism": compare_determinism,
    "batch": compare_batch,
    "custom": compare_custom,
    "record": compare_record,
}
