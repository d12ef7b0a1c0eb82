"""Weights read one tensor at a time from safetensors files, for comparisons that stream them.

A checkpoint here is a ``.safetensors`` file, a ``save_pretrained`` directory or an index of
shards (``model.safetensors.index.json``). Every shard's header is read and checked once
(:func:`~torchaudit.analyzer.load.safetensors_file.read_header`); a tensor is then read with
one positioned read into a tensor of its own, and nothing else of the file stays in memory.

Why not a memory map: the pages a map has touched count in the process's resident memory
until the map is closed, so streaming a 4.4 GB file through one map ends with 4.4 GB
resident, the very thing streaming is for. A read into a fresh tensor costs one copy, which
the comparison needs anyway (the reference casts every weight to its own dtype).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable

import torch

from torchaudit.analyzer.load.safetensors_file import SafetensorsHeader, StEntry, read_header
from torchaudit.errors import CheckpointError

_FIX = "stream weights from .safetensors files: a save_pretrained directory, an index of safetensors shards, or one file"


class WeightFiles:
    """The tensors of one safetensors checkpoint (a file, a directory or an index) by key.

    ``bytes_read`` counts what :meth:`read` has read so far, for progress and for the report."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files = safetensors_files(path)
        self._where: dict[str, tuple[Path, StEntry, int]] = {}
        for f in self.files:
            header: SafetensorsHeader = read_header(f)
            for key, entry in header.tensors.items():
                self._where[key] = (f, entry, header.data_start)
        self.total_bytes = sum(e.end - e.begin for _, e, _ in self._where.values())
        self.bytes_read = 0

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def keys(self) -> Iterable[str]:
        return self._where.keys()

    def read(self, key: str) -> torch.Tensor:
        """Tensor ``key``, read from its file into memory of its own."""
        path, e, start = self._where[key]
        n = e.end - e.begin
        if n == 0:
            return torch.empty(e.shape, dtype=e.dtype)
        if sys.byteorder != "little":  # the file is little-endian: let the library swap the bytes
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as f:
                return f.get_tensor(key).clone()
        buf = torch.empty(n, dtype=torch.uint8)
        view = memoryview(buf.numpy())  # type: ignore[arg-type]  # ndarray is a buffer; numpy's stubs do not say so
        fd = os.open(path, os.O_RDONLY)
        try:
            done = 0
            while done < n:
                got = os.preadv(fd, [view[done:]], start + e.begin + done)
                if got <= 0:
                    raise CheckpointError(f"{path} ended while reading {key!r}", "save or download it again")
                done += got
        finally:
            os.close(fd)
        self.bytes_read += n
        return buf.view(e.dtype).view(e.shape)


def safetensors_files(path: Path) -> list[Path]:
    """The safetensors files of a checkpoint given as a file, a directory or an index."""
    from torchaudit.analyzer.load.sharded import checkpoint_parts

    files = checkpoint_parts(path)
    not_st = [f for f in files if not _is_safetensors(f)]
    if not_st:
        raise CheckpointError(f"{not_st[0]} is not a safetensors file, so its weights cannot be streamed", _FIX)
    return files


def _is_safetensors(path: Path) -> bool:
    from torchaudit.analyzer.load.checkpoint_files import sniff

    try:
        return sniff(path) == "safetensors"
    except (OSError, CheckpointError):
        return False


def checkpoint_bytes(path: Path) -> int:
    """The bytes of every weights file of a checkpoint (a file, a directory or an index)."""
    from torchaudit.analyzer.load.sharded import checkpoint_parts

    return sum(p.stat().st_size for p in checkpoint_parts(path))


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), or ``None``."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def streaming_plan(model: object, checkpoint: str | None, requested: bool | None) -> tuple[Path, str] | None:
    """Whether a scan streams its weights: ``(checkpoint, why)``, or ``None``.

    ``requested`` is ``--stream-weights`` (``True``), ``--no-stream-weights`` (``False``) or
    neither (``None``: stream when the safetensors weights exceed half of the available memory;
    weights that cannot be streamed, such as ``.bin`` pickles, then load as before)."""
    from torchaudit.analyzer.load.transformers_dir import is_transformers_dir
    from torchaudit.errors import OptionError

    if requested is False:
        return None
    path = Path(checkpoint) if checkpoint else None
    if path is None and isinstance(model, str) and is_transformers_dir(Path(model)):
        path = Path(model)
    if path is None:
        if requested:
            raise OptionError("--stream-weights reads the weights from safetensors files, and this scan has none",
                              "pass --checkpoint FILE.safetensors, or a save_pretrained directory as TARGET")
        return None
    why = plan_for([path], requested)
    return (path, why) if why is not None else None


def plan_for(paths: list[Path], requested: bool | None) -> str | None:
    """Why the weights of ``paths`` (checkpoints held in memory together) are streamed, or ``None``."""
    if requested is False:
        return None
    if requested:
        for path in paths:
            safetensors_files(path)  # a .bin or missing checkpoint: one line, exit 2
        return "--stream-weights was passed"
    try:
        size = sum(checkpoint_bytes(p) for p in paths)
        available = available_memory()
        if available is None or size <= available // 2:
            return None
        for path in paths:
            safetensors_files(path)
    except (OSError, CheckpointError):
        return None  # the checkpoint's own loader says what is wrong with it, as without streaming
    return f"the weights ({gigabytes(size)}) exceed half of the available memory ({gigabytes(available)})"


def gigabytes(n: int) -> str:
    return f"{n / 1e9:.1f} GB"
