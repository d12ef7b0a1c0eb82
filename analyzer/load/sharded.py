"""Checkpoints that are a directory or an index: what ``save_pretrained`` writes.

A directory names its weights the way transformers looks for them (``modeling_utils``:
``model.safetensors.index.json``, ``model.safetensors``, ``pytorch_model.bin.index.json``,
``pytorch_model.bin``, safetensors first), else its single checkpoint file. An index
(``{"metadata": ..., "weight_map": {key: shard file}}``) names shards beside it.

Safety and cost, shard by shard: a safetensors shard's structure comes from its header alone
and its tensors are read lazily; every pickle shard (``.bin``) is scanned before any shard is
unpickled, and one with globals outside the weights-only allowlist stops the whole checkpoint
from loading (TA601), exactly as a single file would.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterator, Mapping

import torch
import torch.nn as nn

from torchaudit.analyzer.load.checkpoint import Checkpoint, TensorEntry, load_checkpoint
from torchaudit.analyzer.load.checkpoint_files import CHECKPOINT_SUFFIXES
from torchaudit.analyzer.load.safetensors_file import Releasable
from torchaudit.errors import CheckpointError

WEIGHT_NAMES = (  # transformers' own order of preference
    "model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json", "pytorch_model.bin",
)
_FIX_DIR = "expected a directory with its weights (save_pretrained), a *.index.json, or a checkpoint file"


def weights_in(folder: Path) -> Path:
    """The weights file or index of ``folder``: transformers' names first, else its only checkpoint file."""
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    indexes = sorted(p for p in folder.glob("*.index.json") if p.is_file())
    files = sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())
    if len(indexes) == 1:
        return indexes[0]
    if len(files) == 1 and not indexes:
        return files[0]
    if not files and not indexes:
        raise CheckpointError(f"{folder} is a directory without weights (no {', '.join(WEIGHT_NAMES)})", _FIX_DIR)
    listed = ", ".join(p.name for p in (indexes or files)[:4])
    raise CheckpointError(f"{folder} holds several checkpoints ({listed})", "pass the one to use")


def read_index(index: Path) -> dict[str, Path]:
    """``{tensor key: shard path}`` from an index file, every shard checked to exist beside it."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{index} is not a readable index of a sharded checkpoint ({exc})", "save the model again") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise CheckpointError(f"{index} has no weight_map of tensor names to shard files", "save the model again")
    shards: dict[str, Path] = {}
    for name in dict.fromkeys(weight_map.values()):
        if Path(name).name != name or name in ("", ".", ".."):  # a shard outside the index's folder
            raise CheckpointError(f"{index} names the shard {name!r}, which is not a file beside it", "save the model again")
        shards[name] = index.parent / name
    missing = [name for name, p in shards.items() if not p.is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise CheckpointError(
            f"{index} names {len(missing)} shard(s) missing beside it: {', '.join(missing[:3])}{more}",
            "copy or download every shard the index lists",
        )
    return {key: shards[name] for key, name in weight_map.items()}


def checkpoint_parts(path: Path) -> list[Path]:
    """The files of a checkpoint given as a file, a directory or an index (its shards, sorted)."""
    if path.is_dir():
        path = weights_in(path)
    if path.name.endswith(".index.json"):
        return sorted(set(read_index(path).values()))
    return [path]


def load_sharded(path: Path, *, trust: bool = False, model: nn.Module | None = None) -> Checkpoint:
    """A directory's weights, or the checkpoint an index describes, as one :class:`Checkpoint`."""
    if path.is_dir():
        weights = weights_in(path)
        if not weights.name.endswith(".index.json"):
            return load_checkpoint(weights, trust=trust, model=model)
        path = weights
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}", "check the path")
    weight_map = read_index(path)
    files = sorted(set(weight_map.values()))
    # every shard's pickles are read before any shard is unpickled (safetensors: headers only)
    scanned = [load_checkpoint(f, trust=trust, model=model, scan_only=True) for f in files]
    base = _combined(path, scanned)
    refused = next((s for s in scanned if s.not_loaded_reason), None)
    if refused is not None:
        return dataclasses.replace(base, not_loaded_reason=f"{refused.path.name}: {refused.not_loaded_reason}")
    parts = scanned if base.format == "safetensors" else [load_checkpoint(f, trust=trust, model=model) for f in files]
    entries: dict[str, TensorEntry] = {}
    owners: dict[str, int] = {}
    for i, part in enumerate(parts):
        for key, entry in (part.entries or {}).items():
            if key in owners:
                raise CheckpointError(
                    f"{path}: tensor {key!r} is in two shards, {files[owners[key]].name} and {files[i].name}",
                    "save the model again",
                )
            entries[key], owners[key] = entry, i
    for key, shard in weight_map.items():
        if key not in entries or files[owners[key]] != shard:
            raise CheckpointError(f"{path} places {key!r} in {shard.name}, which does not hold it", "save the model again")
    extra = {k: v for part in parts for k, v in part.extra_state.items()}
    return dataclasses.replace(
        base, entries=entries, tensors=ShardedTensors([p.tensors or {} for p in parts], owners),
        extra_state=extra, trusted=any(p.trusted for p in parts), wrapper_key=next((p.wrapper_key for p in parts if p.wrapper_key), None),
    )


def _combined(index: Path, shards: list[Checkpoint]) -> Checkpoint:
    """What the shards' scans say together: one format, every import, every problem."""
    formats = sorted({s.format for s in shards})
    if len(formats) > 1:
        raise CheckpointError(f"{index} mixes shard formats ({', '.join(formats)})", "save the model again in one format")
    unsafe = {g.name: g for s in shards for g in s.unsafe_globals}
    damage = next((f"{s.path.name}: {s.damage}" for s in shards if s.damage), None)
    return Checkpoint(
        path=index, format=formats[0] if formats else "safetensors",
        imports=tuple(sorted({i for s in shards for i in s.imports})),
        unsafe_globals=tuple(unsafe[k] for k in sorted(unsafe)),
        module_classes=tuple(sorted({c for s in shards for c in s.module_classes})),
        is_pickled_module=any(s.is_pickled_module for s in shards),
        archive_problems=tuple(f"{s.path.name}: {p}" for s in shards for p in s.archive_problems),
        damage=damage,
        metadata={k: v for s in shards for k, v in s.metadata.items()},
        shards=tuple(s.path for s in shards),
    )


class ShardedTensors(Mapping[str, torch.Tensor]):
    """The tensors of several shards by key; each shard's mapping reads as it reads alone
    (a safetensors shard lazily, from its memory map)."""

    def __init__(self, parts: list[Mapping[str, torch.Tensor]], owners: dict[str, int]) -> None:
        self.parts, self._owners = parts, owners

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.parts[self._owners[key]][key]

    def release(self, key: str) -> None:
        """Give back the memory that reading ``key`` took, where its shard can (a safetensors
        shard: :meth:`LazySafetensors.release`; a ``.bin`` shard's tensors stay as loaded)."""
        part = self.parts[self._owners[key]]
        if isinstance(part, Releasable):
            part.release(key)

    def __contains__(self, key: object) -> bool:
        return key in self._owners

    def __iter__(self) -> Iterator[str]:
        return iter(self._owners)

    def __len__(self) -> int:
        return len(self._owners)
