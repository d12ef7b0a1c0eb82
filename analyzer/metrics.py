"""Error statistics between two values, tolerances, and the per-node divergence test.

Values are compared leaf by leaf (tensors inside tuples, lists, dicts and ``ModelOutput``);
integer and boolean tensors and Python numbers exactly. Floating tensors get ``max_abs``,
``max_rel``, ``mismatch_fraction`` (elements outside ``atol + rtol * |reference|``, as
``torch.testing.assert_close`` counts them) and ``cosine``.

Tolerances default to ``torch.testing.assert_close``'s for the candidate dtype
(``torch/testing/_comparison.py``, ``_DTYPE_PRECISIONS``). A node whose elements fall outside
them is still only blamed when its error is above what rounding in the candidate dtype
explains, the way ``torch._dynamo.utils.same(..., fp64_ref=...)`` arbitrates at model outputs
(``res_error <= multiplier * ref_error + tol / 10``): here the explained error is the rounding
of the node's output and inputs plus a reduction term ``u * sqrt(K)`` for a fan-in ``K``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from torchaudit.analyzer.values import leaves
from torchaudit.report import ErrorStats

# torch/testing/_comparison.py: _DTYPE_PRECISIONS, as (rtol, atol)
_PRECISIONS = {
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7),
}


def default_tolerance(dtype: torch.dtype) -> dict[str, float]:
    """``assert_close``'s defaults for ``dtype`` (float32's for non-float dtypes)."""
    rtol, atol = _PRECISIONS.get(dtype, _PRECISIONS[torch.float32])
    return {"atol": atol, "rtol": rtol}


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    unit: float  # unit roundoff of the candidate dtype (eps / 2)
    multiplier: float  # like _dynamo.utils.same: 2 for float32, 3 for half types
    user_set: bool = False  # --atol/--rtol given: the elementwise test alone decides

    @classmethod
    def for_dtype(cls, dtype: torch.dtype, atol: float | None = None, rtol: float | None = None) -> "Tolerance":
        base = default_tolerance(dtype)
        finfo = torch.finfo(dtype if dtype.is_floating_point else torch.float32)
        mult = 3.0 if finfo.bits <= 16 else 2.0
        return cls(
            atol=base["atol"] if atol is None else atol,
            rtol=base["rtol"] if rtol is None else rtol,
            unit=finfo.eps / 2,
            multiplier=mult,
            user_set=atol is not None or rtol is not None,
        )

    def to_dict(self) -> dict[str, float]:
        return {"atol": self.atol, "rtol": self.rtol}


def is_float(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())


def has_nonfinite(value: Any) -> bool:
    for leaf in leaves(value):
        if is_float(leaf) and leaf.numel() and not _finite_tensor(leaf):
            return True
        if isinstance(leaf, float) and not math.isfinite(leaf):
            return True
    return False


@dataclass
class _Acc:
    """Accumulates statistics over the leaves of one output."""

    max_abs: float = 0.0
    max_rel: float = 0.0
    mismatched: int = 0
    count: int = 0
    dot: float = 0.0
    ref_sq: float = 0.0
    cand_sq: float = 0.0
    diff_sq: float = 0.0
    exact_mismatch: bool = False  # an integer/bool leaf or a shape differs
    float_mismatch: bool = False
    nonfinite: bool = False  # NaN/Inf somewhere in either value (then has_nonfinite tells which)

    def stats(self) -> ErrorStats:
        denom = math.sqrt(self.ref_sq * self.cand_sq)
        if denom > 0:
            cosine = max(-1.0, min(1.0, self.dot / denom))
        else:
            cosine = 1.0 if self.ref_sq == self.cand_sq else 0.0
        frac = self.mismatched / self.count if self.count else 0.0
        return ErrorStats(_finite(self.max_abs), _finite(self.max_rel), frac, cosine)

    @property
    def norm_rel(self) -> float:
        """``||cand - ref|| / ||ref||`` over floating leaves."""
        if self.ref_sq == 0.0:
            return 0.0 if self.diff_sq == 0.0 else math.inf
        return math.sqrt(self.diff_sq / self.ref_sq)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 1.7976931348623157e308


def _finite_tensor(t: torch.Tensor) -> bool:
    """No NaN/Inf in ``t``: one vectorized sum; the exact test only when the sum is not finite."""
    total = float(t.detach().sum())
    return math.isfinite(total) or bool(torch.isfinite(t).all())


def _add_tensor(acc: _Acc, ref: torch.Tensor, cand: torch.Tensor, tol: Tolerance, cand_dtype: torch.dtype, light: bool = False) -> None:
    if ref.shape != cand.shape:
        acc.exact_mismatch = True
        acc.count += max(cand.numel(), 1)
        acc.mismatched += max(cand.numel(), 1)
        return
    if ref.device != cand.device:
        ref = ref.to(cand.device)
    n = cand.numel()
    acc.count += n
    if n == 0:
        return
    if not (is_float(ref) or is_float(cand)):
        bad = int((ref != cand).sum())
        if bad:
            acc.exact_mismatch = True
            acc.mismatched += bad
            acc.max_abs = max(acc.max_abs, float((ref.double() - cand.double()).abs().max()))
        return
    wide = torch.float64 if torch.float64 in (ref.dtype, cand.dtype) else torch.float32
    a = ref.detach().reshape(-1).to(wide)
    b = cand.detach().reshape(-1).to(wide)
    if ref.dtype == cand.dtype and torch.equal(a, b):  # the common case of same-dtype comparisons
        finite = _finite_tensor(a)
        acc.nonfinite |= not finite
        sq = float(torch.dot(a, a)) if finite else 0.0
        acc.dot += sq
        acc.ref_sq += sq
        acc.cand_sq += sq
        return
    d = b - a
    d.abs_()
    max_abs = float(d.max())  # NaN or Inf in either value shows here: no separate pass
    bad_nonfinite = 0
    narrower = cand_dtype.is_floating_point and cand_dtype.itemsize < torch.finfo(wide).bits // 8
    if not math.isfinite(max_abs) or (narrower and max_abs > torch.finfo(cand_dtype).max):
        if narrower:
            info = torch.finfo(cand_dtype)  # a reference value beyond the candidate's range saturates
            a = a.clamp(info.min, info.max)
        fa, fb = torch.isfinite(a), torch.isfinite(b)
        both = fa & fb
        same_nonfinite = (~fa & ~fb) & ((a == b) | (a.isnan() & b.isnan()))
        bad_nonfinite = int((~both & ~same_nonfinite).sum())
        acc.nonfinite = bad_nonfinite > 0 or not bool(both.all())
        a = torch.where(both, a, 0.0)
        b = torch.where(both, b, 0.0)
        d = (b - a).abs_()
        max_abs = float(d.max())
    aa = a.abs()
    acc.max_abs = max(acc.max_abs, max_abs)
    work = torch.add(d, aa, alpha=-tol.rtol)  # |d| - rtol |a| > atol: outside assert_close's band
    mism = int(torch.count_nonzero(work > tol.atol)) + bad_nonfinite
    acc.mismatched += mism
    if mism:
        acc.float_mismatch = True
    torch.div(d, aa, out=work)  # |a| == 0 gives nan or inf there: left out of max_rel
    acc.max_rel = max(acc.max_rel, float(work.nan_to_num_(nan=0.0, posinf=0.0).max()))
    if light:
        return
    acc.dot += float(torch.dot(a, b))
    acc.ref_sq += float(torch.dot(a, a))
    acc.cand_sq += float(torch.dot(b, b))
    acc.diff_sq += float(torch.dot(d, d))
    if bad_nonfinite:
        acc.diff_sq = math.inf


def compare_values(ref: Any, cand: Any, tol: Tolerance, cand_dtype: torch.dtype, light: bool = False) -> _Acc | None:
    """Leaf-by-leaf statistics, or ``None`` when the values hold nothing comparable.

    ``light`` measures only ``max_abs``, ``max_rel`` and mismatches (no norms, no cosine)."""
    ref_leaves, cand_leaves = list(leaves(ref)), list(leaves(cand))
    if not cand_leaves and not ref_leaves:
        return None
    acc = _Acc()
    if len(ref_leaves) != len(cand_leaves):
        acc.exact_mismatch = True
        acc.count = acc.mismatched = 1
        return acc
    for r, c in zip(ref_leaves, cand_leaves):
        if isinstance(r, torch.Tensor) and isinstance(c, torch.Tensor):
            _add_tensor(acc, r, c, tol, cand_dtype, light)
        elif isinstance(r, torch.Tensor) or isinstance(c, torch.Tensor):
            acc.exact_mismatch = True
            acc.count += 1
            acc.mismatched += 1
        else:
            acc.count += 1
            if r != c and not (isinstance(r, float) and isinstance(c, float) and math.isnan(r) and math.isnan(c)):
                if isinstance(r, float) or isinstance(c, float):
                    err = abs(float(r) - float(c))
                    if err > tol.atol + tol.rtol * abs(float(r)):
                        acc.float_mismatch = True
                        acc.mismatched += 1
                    acc.max_abs = max(acc.max_abs, err)
                else:
                    acc.exact_mismatch = True
                    acc.mismatched += 1
                    acc.max_abs = max(acc.max_abs, abs(float(r) - float(c)))
    return acc


def fan_in(values: list[Any]) -> int:
    """A rough reduction length for the rounding bound: the largest size of any input dim."""
    k = 1
    for v in values:
        for leaf in leaves(v):
            if is_float(leaf) and leaf.dim():
                k = max(k, max(int(s) for s in leaf.shape))
    return k


def diverges(local: _Acc | None, tol: Tolerance, k: int, explained_rel: Callable[[], float] | None = None) -> bool:
    """Is this node's own error beyond tolerance and beyond what rounding explains?"""
    if local is None:
        return False
    if local.exact_mismatch:
        return True
    if not local.float_mismatch:
        return False
    if tol.user_set:
        return True
    floor = tol.unit * (1.0 + math.sqrt(k))
    if local.norm_rel <= tol.multiplier * floor + tol.rtol / 10.0:
        return False
    if explained_rel is None:
        return True
    return local.norm_rel > tol.multiplier * (floor + explained_rel()) + tol.rtol / 10.0
