"""``torchaudit diff TARGET A B``: what did the new checkpoint change?

First a per-tensor table (key, shape, dtype, max absolute and relative change; keys only in A
or only in B), then the ``checkpoints`` comparison: the model with A loaded (reference) and
with B loaded (candidate), same device and dtype, in lockstep, pinning the first node whose
activations part. Both files are read by :func:`torchaudit.analyzer.load.checkpoint_match.prepare_checkpoint`
(``weights_only`` unless ``--trust-checkpoint``) and loaded into copies with ``strict=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import torch
import torch.nn as nn

from torchaudit.analyzer.compare.comparisons import result_from, skipped
from torchaudit.analyzer.dtypes import dtype_name, model_dtype
from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.load import stored_values
from torchaudit.analyzer.load.safetensors_file import Releasable
from torchaudit.analyzer.load.stored_values import chunks, distinct
from torchaudit.analyzer.compare.metrics import Tolerance
from torchaudit.analyzer.compare.pair import NotStreamed, SideSpec, run_pair
from torchaudit.errors import CheckpointError
from torchaudit.report import ComparisonResult, Config

if TYPE_CHECKING:
    from torchaudit.analyzer.compare.streaming import Streaming
    from torchaudit.analyzer.load.checkpoint import Checkpoint


@dataclass(frozen=True)
class TensorChange:
    key: str
    status: str  # "changed", "unchanged", "only_in_a", "only_in_b", "shape_changed", "dtype_changed", "not_compared"
    shape_a: tuple[int, ...] | None
    shape_b: tuple[int, ...] | None
    dtype_a: str | None
    dtype_b: str | None
    max_abs: float | None = None
    max_rel: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "status": self.status,
            "shape_a": list(self.shape_a) if self.shape_a is not None else None,
            "shape_b": list(self.shape_b) if self.shape_b is not None else None,
            "dtype_a": self.dtype_a, "dtype_b": self.dtype_b,
            "max_abs": self.max_abs, "max_rel": self.max_rel,
        }


def _dt(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def tensor_diff(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> list[TensorChange]:
    """One row per key of A or B, in A's order then B's new keys; tensors read one at a time,
    compared a chunk at a time (:func:`change`), and each side's memory for a key given back
    before the next is read (:class:`~torchaudit.analyzer.load.safetensors_file.Releasable`: a
    safetensors file or shard), so the table's memory stays near the largest pair of tensors,
    not the two files."""
    rows: list[TensorChange] = []
    keys = list(a) + [k for k in b if k not in a]
    for key in keys:
        try:
            rows.append(_compared(key, a, b))
        finally:
            for side in (a, b):
                if key in side and isinstance(side, Releasable):
                    side.release(key)
    return rows


def _compared(key: str, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> TensorChange:
    if key not in b:
        t = a[key]
        return TensorChange(key, "only_in_a", tuple(t.shape), None, _dt(t), None)
    if key not in a:
        t = b[key]
        return TensorChange(key, "only_in_b", None, tuple(t.shape), None, _dt(t))
    ta, tb = a[key], b[key]
    sa, sb = tuple(ta.shape), tuple(tb.shape)
    if sa != sb:
        return TensorChange(key, "shape_changed", sa, sb, _dt(ta), _dt(tb))
    found = change(ta.detach(), tb.detach())
    if found is None:
        return TensorChange(key, "not_compared", sa, sb, _dt(ta), _dt(tb))
    max_abs, max_rel, same = found
    status = "dtype_changed" if ta.dtype != tb.dtype else ("unchanged" if same else "changed")
    return TensorChange(key, status, sa, sb, _dt(ta), _dt(tb), max_abs, max_rel)


def change(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float | None, bool] | None:
    """``(max |y - x|, max |y - x| / |x| over x != 0, whether every pair is equal)`` of two
    tensors of one shape, in float64, a chunk at a time; ``max_rel`` is ``None`` when x is all
    zero and y is not. A NaN makes both maxima NaN; a pair is equal when both are NaN too (a
    NaN that appears or goes is a change, one that stays is not).

    A dimension along which both repeat one stored value (stride 0: ``expand``) is compared
    once. ``None`` when the pairs left to compare outnumber what the two files store more than
    fourfold (two views that repeat values along different dimensions): work follows the file's
    bytes, never the shape it claims."""
    if x.numel() == 0:
        return 0.0, 0.0, True
    if x.layout == torch.strided and y.layout == torch.strided:
        keep = [d for d in range(x.dim()) if x.shape[d] > 1 and (x.stride(d) or y.stride(d))]
        x, y = (t.as_strided([t.shape[d] for d in keep], [t.stride(d) for d in keep]) for t in (x, y))
        if x.numel() > 4 * (distinct(x).numel() + distinct(y).numel()) + stored_values.CHUNK:
            return None
    max_abs = max_rel = 0.0
    any_rel, same = False, True
    step = max(1, stored_values.CHUNK // 8)  # float64 copies of both sides and their difference
    for cx, cy in zip(chunks(x, step), chunks(y, step)):
        xd, yd = cx.double(), cy.double()
        same = same and bool(((xd == yd) | (xd.isnan() & yd.isnan())).all())
        d = (yd - xd).abs()
        max_abs = _top(max_abs, float(d.max()))
        nz = xd != 0
        if bool(nz.any()):
            any_rel = True
            max_rel = _top(max_rel, float((d[nz] / xd[nz].abs()).max()))
    return max_abs, (max_rel if any_rel else (0.0 if max_abs == 0 else None)), same


def _top(a: float, b: float) -> float:
    """The larger of two maxima, NaN if either is (as ``Tensor.max`` propagates it)."""
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def load_pair(model: nn.Module, path: str, trust: bool) -> tuple[Checkpoint, nn.Module | None]:
    """The checkpoint and a copy of ``model`` with it loaded (``None`` when it does not load with
    ``strict=True``: the checkpoint rules then say why, as for ``scan --checkpoint``).

    A file that is not unpickled (unsafe globals, a whole pickled module without
    ``--trust-checkpoint``) leaves nothing to diff: :class:`CheckpointError` (exit 2)."""
    from torchaudit.analyzer.load.checkpoint_match import prepare_checkpoint

    ckpt, loaded = prepare_checkpoint(model, path, trust=trust)
    if not ckpt.loaded:
        raise CheckpointError(f"{path}: {ckpt.not_loaded_reason}", "pass --trust-checkpoint only for a file you made yourself")
    ok = ckpt.loaded_into_model is not None and ckpt.loaded_into_model.ok
    return ckpt, (loaded if ok and loaded is not model else None)


def why_not_loaded(ckpt: Checkpoint) -> str | None:
    """Why a checkpoint did not load into the model with ``strict=True`` (``None`` when it did)."""
    status = ckpt.loaded_into_model
    if status is None or not status.ok:
        return f"{ckpt.path} does not load into the model with strict=True ({status.error if status else 'unknown'})"
    return None


def compare_checkpoints(
    model_a: nn.Module | None, model_b: nn.Module | None, inputs: ExampleInputs | None, why_not: str | None,
    *, atol: float | None = None, rtol: float | None = None, seed: int = 0,
) -> ComparisonResult:
    """The ``checkpoints`` comparison: the model with A loaded against the model with B loaded.
    Skipped (labelled with the configuration it would have run) without inputs or a model."""
    loaded = model_b if model_b is not None else model_a
    dt = model_dtype(loaded, inputs) if loaded is not None else torch.float32
    cfg = Config("cpu", dtype_name(dt), "eval")
    if inputs is None:
        from torchaudit.analyzer.compare.stage import NO_INPUTS

        return skipped("checkpoints", NO_INPUTS, cfg, cfg)
    if model_a is None or model_b is None:
        return skipped("checkpoints", why_not or "a checkpoint did not load into the model", cfg, cfg)
    tol = Tolerance.for_dtype(dt, atol, rtol)
    a = SideSpec(model_a.eval(), inputs.clone(), "eval", seed)
    b = SideSpec(model_b.eval(), inputs.clone(), "eval", seed)
    run, _ = run_pair(a, b, tol, dt)
    return result_from("checkpoints", cfg, cfg, tol, run)


def compare_streamed(
    streaming: Streaming, inputs: ExampleInputs | None, *, atol: float | None = None, rtol: float | None = None,
    seed: int = 0,
) -> ComparisonResult:
    """The ``checkpoints`` comparison on streamed weights: one skeleton, A's tensors read for the
    reference and B's for the candidate as each node needs them (``analyzer/compare/streaming.py``)."""
    from torchaudit.analyzer.compare.comparisons import Options, side_spec

    skeleton = streaming.skeleton
    dt = model_dtype(skeleton, inputs)
    cfg = Config("cpu", dtype_name(dt), "eval")
    if inputs is None:
        from torchaudit.analyzer.compare.stage import NO_INPUTS

        return skipped("checkpoints", NO_INPUTS, cfg, cfg)
    assert streaming.other is not None
    opts = Options(seed=seed, atol=atol, rtol=rtol, streaming=streaming)
    tol = Tolerance.for_dtype(dt, atol, rtol)
    a = side_spec(skeleton, inputs, cfg, dt, seed, opts, weights=streaming.weights)
    b = side_spec(skeleton, inputs, cfg, dt, seed, opts, weights=streaming.other)
    try:
        run, _ = run_pair(a, b, tol, dt)
    except NotStreamed as exc:
        return skipped("checkpoints", str(exc), cfg, cfg)
    return result_from("checkpoints", cfg, cfg, tol, run)
