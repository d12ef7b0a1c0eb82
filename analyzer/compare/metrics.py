"""Error statistics between two values, tolerances, and the per-node divergence test.

Values are compared leaf by leaf (tensors and numbers inside tuples, lists, dicts, named tuples,
dataclasses and ``ModelOutput``, walked by ``analyzer/values.py``);
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
from typing import Any, Callable, TypeGuard

import torch

from torchaudit.analyzer.dtypes import narrower_range
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


def is_float(t: object) -> TypeGuard[torch.Tensor]:
    return isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())


def has_nonfinite(value: Any) -> bool:
    for leaf in leaves(value):
        if is_float(leaf) and leaf.numel() and not _finite_tensor(leaf):
            return True
        if isinstance(leaf, float) and not math.isfinite(leaf):
            return True
    return False


@dataclass
class Measured:
    """The error statistics of one output against another, accumulated over its leaves."""

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
    differs: bool = False  # not bitwise the same value (dtype, device, shape or any element)

    @property
    def identical(self) -> bool:
        """Bitwise the same value: an op fed it on both sides gives both sides the same result."""
        return not self.differs

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


class Workspace:
    """A scratch buffer for the differences, reused from one comparison to the next, so a long
    run allocates (and faults in) it once per dtype and device instead of at every node."""

    def __init__(self) -> None:
        self._bufs: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    def get(self, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (dtype, device)
        buf = self._bufs.get(key)
        if buf is None or buf.numel() < n:
            self._bufs.pop(key, None)  # free the old one before the bigger one is allocated
            buf = self._bufs[key] = torch.empty(n, dtype=dtype, device=device)
        return buf[:n]


def compute_dtype(ref_dtype: torch.dtype, cand_dtype: torch.dtype, tol: Tolerance) -> torch.dtype:
    """The dtype differences are measured in.

    Float64 when both sides are float64, or when one is and the relative tolerance is finer
    than float32 can resolve (a user's ``--rtol 0``). Otherwise float32: the reference is
    rounded to float32 once, an error of at most half a float32 ulp per element: at most an
    eighth of the ``rtol`` band (a twentieth of the default 1.3e-6 of ``torch.testing``) and
    inside the ``u * (1 + sqrt(K))`` floor every node is granted. It halves the memory traffic."""
    f64 = torch.float64
    if ref_dtype == f64 and cand_dtype == f64:
        return f64
    if f64 in (ref_dtype, cand_dtype) and tol.rtol < _FINE_RTOL:
        return f64
    return torch.float32


_FINE_RTOL = 4 * torch.finfo(torch.float32).eps


class Reference:
    """A reference value prepared once for several comparisons (total and local share it):
    its floating leaves in the compute dtype, their magnitudes and squared norms, cached.
    ``cast`` is the same value already cast like the candidate, when one was made anyway."""

    def __init__(self, value: Any, cast: Any = None) -> None:
        self.leaves = list(leaves(value))
        cast_leaves = list(leaves(cast)) if cast is not None else []
        self._cast = cast_leaves if len(cast_leaves) == len(self.leaves) else None
        self._wide: dict[tuple[int, torch.dtype], torch.Tensor] = {}
        self._abs: dict[tuple[int, torch.dtype], torch.Tensor] = {}
        self._sq: dict[tuple[int, torch.dtype], float] = {}

    def wide(self, i: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (i, dtype)
        if key not in self._wide:
            c = self._cast[i] if self._cast is not None else None
            if isinstance(c, torch.Tensor) and c.dtype == dtype and c.device == device:
                self._wide[key] = c.detach().reshape(-1)  # the reference already cast like the candidate
            else:
                self._wide[key] = self.leaves[i].detach().reshape(-1).to(device=device, dtype=dtype)
        return self._wide[key]

    def magnitude(self, i: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (i, dtype)
        if key not in self._abs:
            self._abs[key] = self.wide(i, dtype, device).abs()
        return self._abs[key]

    def sq(self, i: int, dtype: torch.dtype, device: torch.device) -> float:
        key = (i, dtype)
        if key not in self._sq:
            a = self.wide(i, dtype, device)
            self._sq[key] = float(torch.dot(a, a))
        return self._sq[key]


def _add_tensor(acc: Measured, ref: Reference, i: int, cand: torch.Tensor, tol: Tolerance, cand_dtype: torch.dtype,
                light: bool, ws: Workspace | None) -> None:
    r = ref.leaves[i]
    if r.shape != cand.shape:  # no element compares with another: the error is unbounded, never "0"
        acc.exact_mismatch = acc.differs = True
        acc.max_abs = acc.max_rel = math.inf
        acc.count += max(cand.numel(), 1)
        acc.mismatched += max(cand.numel(), 1)
        return
    n = cand.numel()
    acc.count += n
    acc.differs |= r.dtype != cand.dtype or r.device != cand.device or r.stride() != cand.stride()
    if n == 0:
        return
    device = cand.device
    if not (is_float(r) or is_float(cand)):
        r = r.to(device)
        bad = int((r != cand).sum())
        if bad:
            acc.exact_mismatch = acc.differs = True
            acc.mismatched += bad
            acc.max_abs = max(acc.max_abs, float((r.double() - cand.double()).abs().max()))
        return
    wide = compute_dtype(r.dtype, cand.dtype, tol)
    if r.dtype == cand.dtype and r.device == device and torch.equal(r, cand):  # common in same-dtype comparisons
        finite = _finite_tensor(cand)
        acc.nonfinite |= not finite
        sq = ref.sq(i, wide, device) if finite else 0.0
        acc.dot += sq
        acc.ref_sq += sq
        acc.cand_sq += sq
        return
    acc.differs = True
    a = ref.wide(i, wide, device)
    b = cand.detach().reshape(-1).to(wide)
    scratch = ws.get(n, wide, device) if ws is not None else None
    d = torch.sub(b, a, out=scratch)  # signed: aminmax gives max |d| in one pass
    max_abs = _max_magnitude(d)  # NaN or Inf in either value shows here: no separate pass
    bad_nonfinite = 0
    narrower = narrower_range(r.dtype, cand_dtype)
    if math.isfinite(max_abs) and not (narrower and max_abs > torch.finfo(cand_dtype).max):
        magnitude = (lambda: ref.magnitude(i, wide, device))
        a_sq = (lambda: ref.sq(i, wide, device))
    else:
        a = r.detach().reshape(-1).to(device)
        b = cand.detach().reshape(-1)
        same_limit = _limit_sign(a) * _limit_sign(b) > 0  # both at a limit (or infinite) of one sign
        if narrower:
            info = torch.finfo(cand_dtype)  # a finite reference value beyond the candidate's range saturates
            a = torch.where(a.isfinite(), a.clamp(info.min, info.max), a)
        a, b = a.to(wide), b.to(wide)
        fa, fb = torch.isfinite(a), torch.isfinite(b)
        same_nonfinite = same_limit | (a.isnan() & b.isnan())
        both = fa & fb & ~same_limit
        bad_nonfinite = int(((~fa | ~fb) & ~same_nonfinite).sum())
        acc.nonfinite |= bad_nonfinite > 0 or not bool((fa & fb).all())
        a = torch.where(both, a, 0.0)
        b = torch.where(both, b, 0.0)
        d = torch.sub(b, a, out=d)
        max_abs = _max_magnitude(d)
        magnitude = a.abs
        a_sq = (lambda: float(torch.dot(a, a)))
    acc.max_abs = max(acc.max_abs, max_abs)
    mism = bad_nonfinite
    if max_abs > tol.atol:  # else every element is inside assert_close's band: no pass needed
        work = d.abs().add_(magnitude(), alpha=-tol.rtol)  # not kept in ws: the path is rare, its buffers big
        mism += int(torch.count_nonzero(work > tol.atol))
    acc.mismatched += mism
    if mism:
        acc.float_mismatch = True
    if not light:  # with b = a + d: a.b = a.a + a.d and b.b = a.a + 2 a.d + d.d; a.a is the reference's, shared
        aa, ad, dd = a_sq(), float(torch.dot(a, d)), float(torch.dot(d, d))
        acc.dot += aa + ad
        acc.ref_sq += aa
        acc.cand_sq += max(aa + 2.0 * ad + dd, 0.0)
        acc.diff_sq += dd
    if bad_nonfinite:  # an infinity or NaN against a number: the error is unbounded, never "0"
        acc.diff_sq = math.inf
        max_abs = acc.max_abs = math.inf
        acc.max_rel = math.inf
    d.div_(a)  # |d / a| is the relative error; a == 0 gives nan or inf there: left out of max_rel
    max_rel = _max_magnitude(d)
    if not math.isfinite(max_rel):
        max_rel = _max_magnitude(d.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0))
    acc.max_rel = max(acc.max_rel, max_rel)


def _limit_sign(t: torch.Tensor) -> torch.Tensor:
    """``+1`` where ``t`` is at its dtype's largest value or ``+inf``, ``-1`` at the lowest or
    ``-inf``, ``0`` elsewhere. A value at its dtype's own limit stands for that limit: a mask
    filled with ``finfo(float64).min`` on one side, ``finfo(float32).min`` or ``-inf`` on the
    other means the same on both (transformers' causal masks)."""
    info = torch.finfo(t.dtype)
    return (t >= info.max).to(torch.int8) - (t <= info.min).to(torch.int8)


def _max_magnitude(t: torch.Tensor) -> float:
    """``max |t|`` in one pass (``aminmax``; NaN if any element is NaN)."""
    lo, hi = torch.aminmax(t)
    return max(-float(lo), float(hi))


def compare_values(ref: Any, cand: Any, tol: Tolerance, cand_dtype: torch.dtype, light: bool = False,
                   ws: Workspace | None = None) -> Measured | None:
    """Leaf-by-leaf statistics, or ``None`` when the values hold nothing comparable.

    ``ref`` may be a :class:`Reference` (prepared once, compared several times). ``light``
    measures only ``max_abs``, ``max_rel`` and mismatches (no norms, no cosine). ``ws`` lends
    scratch buffers across calls."""
    prepared = ref if isinstance(ref, Reference) else Reference(ref)
    ref_leaves, cand_leaves = prepared.leaves, list(leaves(cand))
    if not cand_leaves and not ref_leaves:
        return None
    acc = Measured()
    if len(ref_leaves) != len(cand_leaves):
        acc.exact_mismatch = acc.differs = True
        acc.max_abs = acc.max_rel = math.inf
        acc.count = acc.mismatched = 1
        return acc
    for i, (r, c) in enumerate(zip(ref_leaves, cand_leaves)):
        if isinstance(r, torch.Tensor) and isinstance(c, torch.Tensor):
            _add_tensor(acc, prepared, i, c, tol, cand_dtype, light, ws)
        elif isinstance(r, torch.Tensor) or isinstance(c, torch.Tensor):
            acc.exact_mismatch = acc.differs = True
            acc.count += 1
            acc.mismatched += 1
        else:
            acc.count += 1
            if r != c and not (isinstance(r, float) and isinstance(c, float) and math.isnan(r) and math.isnan(c)):
                acc.differs = True
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


def diverges(local: Measured | None, tol: Tolerance, k: int, explained_rel: Callable[[], float] | None = None) -> bool:
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
