"""A safetensors file: its header read and checked as the safetensors library checks it, and its
tensors read lazily, by key, in constant time.

Layout (huggingface/safetensors, ``SafeTensors::read_metadata`` and ``Metadata::validate``): 8
bytes of little-endian header length N (at most 100,000,000), N bytes of UTF-8 JSON, then the data
section. The JSON object maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin,
end]}`` (offsets in bytes from the start of the data section) and may hold ``"__metadata__"``, a
map of strings to strings. Sorted by offset, the tensors tile the data section exactly: the first
begins at 0, each begins where the one before ended, the last ends at the end of the file, and
each spans ``prod(shape) * itemsize`` bytes, so no two tensors share a byte.

Every check here is one the library makes too (tests/test_safetensors_header.py builds each case and
asserts that ``safe_open`` refuses it as well), except one: a name given twice, which the library's
JSON reader collapses without a word; which of the two a reader sees would depend on the reader.
Checking here, in Python, names the tensor and the fault in one line (:class:`CheckpointError`),
and builds the entries from the header alone: 80,000 tensors cost one JSON parse, not 80,000
library calls.
"""

from __future__ import annotations

import gc
import json
import math
import mmap
import reprlib
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple, Protocol, runtime_checkable

import torch

from torchaudit.analyzer.load.checkpoint_files import truncated
from torchaudit.errors import CheckpointError

MAX_HEADER = 100_000_000  # the library's MAX_HEADER_SIZE, in bytes
_FIX = "save or download it again"
# safetensors dtype codes -> torch dtypes (safetensors/torch.py ``_TYPES``, plus F8_E8M0)
_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "C64": "complex64",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64", "U32": "uint32", "U16": "uint16",
    "U8": "uint8", "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2": "float8_e5m2", "F8_E5M2FNUZ": "float8_e5m2fnuz", "F8_E8M0": "float8_e8m0fnu",
}
_DTYPE_OBJECTS = {code: d for code, name in _DTYPES.items() if isinstance(d := getattr(torch, name, None), torch.dtype)}
_MAX_DIM = 2**63  # torch sizes are int64
_SUB_BYTE = ("F4", "F6_E2M3", "F6_E3M2")  # codes the library knows that pack several values per byte
_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlist, _short.maxdict, _short.maxlevel = 60, 60, 6, 4, 3


class StEntry(NamedTuple):  # a NamedTuple: 80,000 of them are built in a blink
    """One tensor of the header: dtype, shape, and where its bytes lie in the data section."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    tensors: dict[str, StEntry]  # in the header's order
    metadata: dict[str, str]
    data_start: int  # the file offset of the data section: 8 + N


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return out


def damaged(path: Path, detail: str) -> CheckpointError:
    return CheckpointError(f"{path} is a damaged safetensors file: {detail}", _FIX)


def read_header(path: Path) -> SafetensorsHeader:
    """The checked header of the safetensors file at ``path`` (reads the header only)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise truncated(path, "safetensors", "it ends inside the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            raise damaged(path, f"its header claims {n:,} bytes, more than the {MAX_HEADER:,} safetensors allows")
        if 8 + n > size:
            raise truncated(path, "safetensors", f"its header claims {n} bytes, the file has {size}")
        raw = fh.read(n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise damaged(path, f"its header is not UTF-8 text (byte {exc.start} of it)") from None
    gc.disable()  # a header of 80,000 entries is 400,000 new containers: no use collecting between them
    try:
        obj = json.loads(text, object_pairs_hook=_unique)
        if isinstance(obj, dict):
            metadata = obj.pop("__metadata__", None)
            metadata = {} if metadata is None else metadata  # null is allowed, as no metadata
            tensors = _entries(path, obj)
    except RecursionError:
        raise damaged(path, "its header is not JSON (nested too deeply to read)") from None
    except _Duplicate as dup:
        raise damaged(path, f"its header names {_short.repr(dup.key)} twice") from None
    except ValueError as exc:  # JSONDecodeError, and an integer of more than 4,300 digits
        raise damaged(path, f"its header is not JSON ({' '.join(str(exc).split())})") from None
    finally:
        gc.enable()
    if not isinstance(obj, dict):
        raise damaged(path, f"its header is a JSON {type(obj).__name__}, not an object")
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise damaged(path, f"its __metadata__ is {_short.repr(metadata)}, not a map of strings to strings")
    _check_tiling(path, tensors, size - 8 - n, n)
    return SafetensorsHeader(tensors, metadata, 8 + n)


def _is_count(x: object, limit: int | None = None) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x and (limit is None or x < limit)


def _entries(path: Path, header: dict[str, Any]) -> dict[str, StEntry]:
    """The entries of a header's tensors, checked (one loop, no call per entry: 80,000 of them)."""
    out: dict[str, StEntry] = {}
    ints, dtypes = {int}, _DTYPE_OBJECTS
    for key, info in header.items():
        if type(info) is dict:
            code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
            if type(code) is str and type(shape) is list and type(offsets) is list and len(offsets) == 2:
                dtype, (begin, end) = dtypes.get(code), offsets
                if (
                    dtype is not None and type(begin) is int and type(end) is int and 0 <= begin <= end
                    and (not shape or ({*map(type, shape)} == ints and min(shape) >= 0 and max(shape) < _MAX_DIM))
                    and math.prod(shape) * dtype.itemsize == end - begin
                ):
                    out[key] = StEntry(dtype, tuple(shape), begin, end)
                    continue
        raise _fault(path, key, info)
    return out


def _fault(path: Path, key: str, info: object) -> CheckpointError:
    """What is wrong with the header entry ``info`` of tensor ``key`` (the slow path: it is wrong)."""
    name = f"tensor {_short.repr(key)}"
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        return damaged(path, f"{name} is described by {_short.repr(info)}, not an object with dtype, shape and data_offsets")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(code, str):
        return damaged(path, f"{name} has dtype {_short.repr(code)}, not a dtype name such as \"F32\"")
    if not isinstance(shape, list) or not all(_is_count(d, _MAX_DIM) for d in shape):
        return damaged(path, f"{name} has shape {_short.repr(shape)}, not a list of non-negative 64-bit integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets) and offsets[0] <= offsets[1]):
        return damaged(path, f"{name} has data_offsets {_short.repr(offsets)}, not two integers 0 <= begin <= end")
    dtype = _torch_dtype(path, name, code)
    nbytes = math.prod(shape) * dtype.itemsize
    return damaged(path, f"{name} is {code}{shape} ({nbytes:,} bytes) but its data_offsets span {offsets[1] - offsets[0]:,} bytes")


def _torch_dtype(path: Path, name: str, code: str) -> torch.dtype:
    dtype = _DTYPE_OBJECTS.get(code)
    if dtype is not None:
        return dtype
    if code in _DTYPES or code in _SUB_BYTE:
        raise CheckpointError(f"{path} holds {name} of dtype {code}, which this torch cannot represent", "upgrade torch")
    raise damaged(path, f"{name} has dtype {_short.repr(code)}, which is no safetensors dtype")


def _check_tiling(path: Path, tensors: dict[str, StEntry], data: int, n: int) -> None:
    """Sorted by offset, the tensors cover the data section of ``data`` bytes exactly, once."""
    at, before = 0, None  # the tensor that ends at ``at``
    for begin, end, key in sorted((e.begin, e.end, key) for key, e in tensors.items()):
        if begin != at:
            name = f"tensor {_short.repr(key)}"
            if before is None:
                raise damaged(path, f"its first {name} begins at byte {begin:,} of the data section, not 0")
            if begin < at:
                raise damaged(path, f"tensors {_short.repr(before)} and {_short.repr(key)} overlap (data_offsets {begin:,} < {at:,})")
            raise damaged(path, f"{begin - at:,} bytes between tensors {_short.repr(before)} and {_short.repr(key)} belong to none")
        at, before = end, key
    if at > data:
        raise truncated(path, "safetensors", f"its tensors need {8 + n + at} bytes, the file has {8 + n + data}")
    if at < data:
        raise damaged(path, f"{data - at:,} bytes after its last tensor belong to none")


@runtime_checkable
class Releasable(Protocol):
    """A mapping of checkpoint tensors that can give back the memory reading one of them took
    (:class:`LazySafetensors`, and a sharded checkpoint of its shards)."""

    def release(self, key: str) -> None: ...


class LazySafetensors(Mapping[str, torch.Tensor]):
    """The tensors of a checked safetensors file, each read when asked for (never all at once).

    A tensor is a view of a copy-on-write map of the file (as the library's ``framework="pt"``
    gives): nothing is read before its pages are touched, and writing into it never reaches the
    file. Lookup is a dict access; the map is made on the first read.
    """

    def __init__(self, path: Path, header: SafetensorsHeader) -> None:
        self._path, self._header = path, header
        self._map: mmap.mmap | None = None

    def __getitem__(self, key: str) -> torch.Tensor:
        e = self._header.tensors[key]
        if e.begin == e.end:
            return torch.empty(e.shape, dtype=e.dtype)
        if sys.byteorder != "little":  # the file is little-endian: let the library swap the bytes
            from safetensors import safe_open

            with safe_open(str(self._path), framework="pt", device="cpu") as f:
                return f.get_tensor(key)
        return self._flat(e.dtype, e.begin, e.end).view(e.shape)

    def release(self, key: str) -> None:
        """Give back the memory that reading ``key`` took: its pages leave this process's map
        (``madvise(MADV_DONTNEED)``), so a reader that goes tensor by tensor (``diff``'s table)
        stays near the largest tensor, not the file.

        Why madvise and not a map per tensor: the pages a read touches are resident and count in
        the process's RSS until they are unmapped or dropped, however long ago they were read. A
        map per tensor would unmap them when the tensor dies, but 80,000 tensors held at once (a
        ``load_state_dict``) would be 80,000 maps, past Linux's default ``vm.max_map_count``
        (65,530); and ``pread`` into a buffer per tensor copies what the map shares with the page
        cache. Dropping pages of this private (copy-on-write) file map is always safe here: a
        view still held reads them from the file again when touched, and nothing in torchaudit
        writes into a checkpoint's tensors (a write would be dropped with its page). Pages shared
        with the neighbouring tensors are dropped too, and read again if they are needed. Where
        the platform has no ``MADV_DONTNEED`` (Windows), nothing happens."""
        e = self._header.tensors[key]
        advice = getattr(mmap, "MADV_DONTNEED", None)
        if self._map is None or e.begin == e.end or advice is None:
            return
        start = self._header.data_start + e.begin
        aligned = start - start % mmap.PAGESIZE
        self._map.madvise(advice, aligned, self._header.data_start + e.end - aligned)

    def _flat(self, dtype: torch.dtype, begin: int, end: int) -> torch.Tensor:
        """Bytes ``begin`` to ``end`` of the data section as a 1-D tensor of ``dtype`` (no copy)."""
        if self._map is None:
            with open(self._path, "rb") as fh:
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
        return torch.frombuffer(self._map, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=self._header.data_start + begin)

    def runs(self) -> Iterator[tuple[tuple[str, ...], tuple[int, ...], torch.Tensor]]:
        """Stretches of the data section whose tensors, adjacent in the file, share a dtype:
        ``(keys, where each key's values start in the stretch, the stretch as one 1-D tensor)``.
        A check of every value costs a few reductions, not one per tensor (80,000 of them)."""
        if sys.byteorder != "little":
            for key in self:
                yield (key,), (0,), self[key].reshape(-1)
            return
        order = sorted((e.begin, key) for key, e in self._header.tensors.items() if e.end > e.begin)
        i = 0
        while i < len(order):
            first = self._header.tensors[order[i][1]]
            j = i + 1
            while j < len(order) and self._header.tensors[order[j][1]].dtype == first.dtype:
                j += 1
            last = self._header.tensors[order[j - 1][1]]
            size = first.dtype.itemsize
            yield (tuple(k for _, k in order[i:j]), tuple((b - first.begin) // size for b, _ in order[i:j]),
                   self._flat(first.dtype, first.begin, last.end))
            i = j

    def __contains__(self, key: object) -> bool:
        return key in self._header.tensors  # Mapping's default would read the tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self._header.tensors)

    def __len__(self) -> int:
        return len(self._header.tensors)

