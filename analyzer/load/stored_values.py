"""The values a checkpoint stores, each read once, whatever its tensors' views claim.

``torch.save`` writes storages, and tensors as views of them (offset, sizes, strides). A view
may claim far more elements than it stores: ``torch.full((1,), nan).expand(2**30)`` is a
1.6 KB file whose tensor has 2**30 elements over one stored value, so ``torch.isfinite(t)``
allocates a 1 GiB mask and a float64 copy 8 GiB. Everything here works on the storage: a view is
reduced to the stored values it reads (stride-0 and size-1 dimensions dropped), views that
share a storage are read once, and reductions run in chunks of :data:`CHUNK` elements, so
work and memory follow the bytes in the file, not the shapes the file claims.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch

from torchaudit.analyzer.load.safetensors_file import LazySafetensors
from torchaudit.analyzer.load.sharded import ShardedTensors

CHUNK = 1 << 22  # elements per reduction step: a 4 MiB mask, a 32 MiB float64 copy


@dataclass(frozen=True)
class StoredBlock:
    """Stored values that one or more checkpoint tensors view."""

    keys: tuple[str, ...]  # the tensors viewing these values, in checkpoint order: the first names the block
    values: torch.Tensor  # the stored values (a view of the storage, not a copy)
    numel: int  # elements of the first key's view: more than values.numel() for a stride-0 view


def _dims(t: torch.Tensor) -> tuple[list[tuple[int, int]], bool]:
    """``(stride, size)`` of the dimensions that reach new storage elements, by stride, and
    whether no two elements of the view are one stored value (after dropping stride-0 ones)."""
    dims = sorted((st, n) for n, st in zip(t.shape, t.stride()) if n > 1 and st != 0)
    reach = 0
    for st, n in dims:
        if st <= reach:
            return dims, False
        reach += st * (n - 1)
    return dims, True


def _plain(t: torch.Tensor) -> bool:
    return (t.layout == torch.strided and t.device.type != "meta" and not t.is_quantized
            and type(t) in (torch.Tensor, torch.nn.Parameter))


def _sparse_values(t: torch.Tensor) -> torch.Tensor:
    """What a sparse tensor stores: its values (the zeros it implies are no stored values)."""
    if t.layout == torch.sparse_coo:
        return t._values()
    if t.layout in (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc):
        return t.values()
    return t


def _span(t: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Elements ``lo`` to ``hi`` of ``t``'s storage, as ``t``'s dtype: a 1-D view, no copy."""
    flat = torch.empty(0, dtype=t.dtype, device=t.device)
    with torch.no_grad():
        return flat.set_(t.untyped_storage(), lo, (hi - lo,), (1,))


def _reach(t: torch.Tensor) -> tuple[int, int]:
    """The storage elements ``[lo, hi)`` between ``t``'s first and last element (``t`` not empty)."""
    lo = int(t.storage_offset())
    return lo, lo + 1 + sum(st * (int(n) - 1) for n, st in zip(t.shape, t.stride()) if n > 1)


def distinct(t: torch.Tensor) -> torch.Tensor:
    """The stored values view ``t`` reads, each once: at most the storage's size, never the view's.

    A view whose elements are distinct stored values comes back as such a view; one that reads
    some values twice through other than stride-0 dimensions (an unfold-like window) comes back
    as the whole span of storage it covers. Anything that is not a plain strided CPU tensor
    (sparse, a subclass) comes back as is."""
    if not _plain(t) or t.numel() == 0:
        return _sparse_values(t)
    dims, disjoint = _dims(t)
    lo, hi = _reach(t)
    if not disjoint or math.prod(n for _, n in dims) == hi - lo:
        return _span(t, lo, hi)  # dense, or overlapping: the span it covers
    dims.reverse()  # gaps between the elements (a column slice): the elements, by largest stride first
    return t.as_strided([n for _, n in dims], [st for st, _ in dims], lo)


def chunks(values: torch.Tensor, size: int | None = None) -> Iterator[torch.Tensor]:
    """``values`` in views of at most ``size`` (default :data:`CHUNK`) elements, slices along the
    leading dimensions."""
    size = size or CHUNK
    if values.dim() == 0 or values.numel() <= size:
        if values.numel():
            yield values
        return
    if values.dim() == 1:
        for i in range(0, values.numel(), size):
            yield values[i:i + size]
        return
    row = values.numel() // values.shape[0]
    for i in range(0, values.shape[0], max(1, size // row)):
        yield from chunks(values[i:i + size // row] if row <= size else values[i], size)


def all_equal(t: torch.Tensor, value: float) -> bool:
    """Whether every stored value ``t`` reads equals ``value`` (``True`` for an empty tensor)."""
    return all(bool((c == value).all()) for c in chunks(distinct(t)))


def blocks(tensors: Mapping[str, torch.Tensor]) -> Iterator[StoredBlock]:
    """The stored values of a checkpoint's tensors, one block per stretch of storage.

    A safetensors file's tensors tile its data section, so no two share a byte: each is its own
    block, read when its turn comes. A ``torch.save`` file's tensors (all loaded already) are
    grouped by storage: views whose spans overlap form one block (tied weights, a weight and its
    expanded view), read once. A sharded checkpoint's shards are read one after another."""
    if isinstance(tensors, ShardedTensors):
        for part in tensors.parts:
            yield from blocks(part)
        return
    if isinstance(tensors, LazySafetensors):
        for key in tensors:
            t = tensors[key]
            if t.numel():
                yield StoredBlock((key,), t.reshape(-1), t.numel())
        return
    groups: dict[tuple[int, torch.dtype], list[tuple[int, str, torch.Tensor]]] = {}
    out: list[tuple[int, StoredBlock]] = []
    for i, (key, t) in enumerate(tensors.items()):
        if not t.numel() or t.device.type == "meta":
            continue
        if not _plain(t):
            out.append((i, StoredBlock((key,), distinct(t), t.numel())))
            continue
        groups.setdefault((t.untyped_storage().data_ptr(), t.dtype), []).append((i, key, t))
    for views in groups.values():
        out += _clusters(views)
    for _, block in sorted(out, key=lambda ib: ib[0]):
        yield block


def nonfinite(tensors: Mapping[str, torch.Tensor]) -> Iterator[tuple[StoredBlock, int, int]]:
    """``(block, NaN count, Inf count)`` for each block of floating values that holds either.

    A safetensors file is read a stretch of same-dtype tensors at a time (its 80,000 tensors are
    a few reductions, not 80,000), and the NaN and Inf found are traced back to their tensors."""
    if isinstance(tensors, ShardedTensors):
        for part in tensors.parts:
            yield from nonfinite(part)
        return
    if isinstance(tensors, LazySafetensors):
        for keys, starts, values in tensors.runs():
            if _floating(values):
                yield from _run_counts(keys, starts, values)
        return
    for block in blocks({k: t for k, t in tensors.items() if _floating(t)}):
        if _floating(block.values):
            nan, inf = _counts(block.values)
            if nan or inf:
                yield block, nan, inf


def _floating(t: torch.Tensor) -> bool:
    return t.is_floating_point() or t.is_complex()


def _bad(chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """NaN and Inf masks of ``chunk``, or ``None`` when every value is finite (one pass)."""
    if chunk.dtype.itemsize == 1:  # float8: isfinite is not implemented for float8_e4m3fn, isinf for e8m0
        chunk = chunk.float()
    if bool(torch.isfinite(chunk).all()):
        return None
    return torch.isnan(chunk), torch.isinf(chunk)


def _counts(values: torch.Tensor) -> tuple[int, int]:
    nan = inf = 0
    for chunk in chunks(values):
        masks = _bad(chunk)
        if masks is not None:
            nan, inf = nan + int(masks[0].sum()), inf + int(masks[1].sum())
    return nan, inf


def _run_counts(keys: tuple[str, ...], starts: tuple[int, ...], values: torch.Tensor) -> Iterator[tuple[StoredBlock, int, int]]:
    bounds = torch.tensor(starts)
    nan = torch.zeros(len(keys), dtype=torch.int64)
    inf = torch.zeros(len(keys), dtype=torch.int64)
    at = 0
    for chunk in chunks(values):
        masks = _bad(chunk)
        if masks is not None:
            for mask, total in zip(masks, (nan, inf)):
                owner = torch.searchsorted(bounds, mask.nonzero().flatten() + at, right=True) - 1
                total += torch.bincount(owner, minlength=len(keys))
        at += chunk.numel()
    ends = (*starts[1:], values.numel())
    for i in (nan + inf).nonzero().flatten().tolist():
        part = values[starts[i]:ends[i]]
        yield StoredBlock((keys[i],), part, part.numel()), int(nan[i]), int(inf[i])


def _clusters(views: list[tuple[int, str, torch.Tensor]]) -> list[tuple[int, StoredBlock]]:
    """Views of one storage and dtype, in clusters of overlapping spans, one block each."""
    spans = sorted((_reach(t), i, key, t) for i, key, t in views)
    out: list[tuple[int, StoredBlock]] = []
    start = 0
    while start < len(spans):
        (lo, hi), end = spans[start][0], start + 1
        while end < len(spans) and spans[end][0][0] < hi:
            hi = max(hi, spans[end][0][1])
            end += 1
        members = sorted(spans[start:end], key=lambda s: s[1])  # checkpoint order
        first = members[0][3]
        same = all((m[3].storage_offset(), m[3].shape, m[3].stride()) == (first.storage_offset(), first.shape, first.stride())
                   for m in members)
        values = distinct(first) if same else _span(first, lo, hi)
        out.append((members[0][1], StoredBlock(tuple(m[2] for m in members), values, first.numel())))
        start = end
    return out
