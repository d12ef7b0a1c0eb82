"""A recording on disk: a folder of safetensors shards and one JSON manifest, written last.

Layout of a bundle (``torchaudit record TARGET --output RUN``)::

    RUN/manifest.json            schema version, graph, inputs, environment, configuration,
                                 fingerprint, every node's value (tensor keys and plain leaves)
    RUN/shard-00000.safetensors  tensors, written as the run produces them, a shard at a time

Values are nested (tuples, dicts, model outputs): each is flattened with the code base's one
walker (``analyzer/values.py``) and stored leaf by leaf: a tensor as a key into a shard, a
number, string, ``None``, dtype or device as JSON, anything else as its type name only (an
*opaque* leaf, which a reader takes from the live side). The structure is not stored as code:
a reader rebuilds a value in the structure of the live side's own value at that node.

Nothing here unpickles: the manifest is JSON and tensors are read with ``safetensors.safe_open``
(memory-mapped). A bundle without a complete manifest, or with a shard that is missing or
shorter than the manifest says, is *truncated* and refused (:class:`RecordingError`, exit 2).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import weakref
from pathlib import Path
from typing import Any, Iterable

import torch

from torchaudit.analyzer.values import flatten
from torchaudit.errors import TorchAuditError

FORMAT = "torchaudit-recording"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SHARD = "shard-{:05d}.safetensors"
SHARD_BYTES = 64 * 2**20  # tensors held in memory before a shard is written


class RecordingError(TorchAuditError):
    """A recording that cannot be written, read or used with this model (exit 2, one line)."""


Encoded = dict[str, Any]  # {"leaves": [...], "structure": "..."}


class BundleWriter:
    """Writes a bundle: :meth:`value` stores one node's value (tensors go to the current shard,
    which is written once it holds ``shard_bytes``), :meth:`close` writes the last shard and
    then the manifest. Until then the folder has no manifest, so a run that stops half way
    leaves a bundle every reader calls truncated."""

    def __init__(self, directory: str | Path, shard_bytes: int = SHARD_BYTES) -> None:
        self.dir = Path(directory)
        self.shard_bytes = shard_bytes
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.shards: list[dict[str, Any]] = []
        self.written: dict[int, tuple[weakref.ref[torch.Tensor], Encoded]] = {}  # id(tensor) -> its leaf
        self.tensors = 0
        _prepare_folder(self.dir)

    def value(self, key: str, value: Any, reuse: bool = False) -> Encoded:
        """Store ``value`` under ``key`` (a node's name) and return how the manifest refers to it.
        ``reuse``: a tensor stored before (the same object, unchanged since: see :meth:`forget`)
        is referred to, not stored again (the output node hands on other nodes' tensors)."""
        flat, spec = flatten(value)
        leaves = [self._leaf(f"{key}/{i}", v, reuse) for i, v in enumerate(flat)]
        return {"leaves": leaves, "structure": _structure(spec)}

    def forget(self) -> None:
        """An in-place op ran: tensors stored so far may hold other numbers now, so none is reused."""
        self.written.clear()

    def _leaf(self, key: str, v: Any, reuse: bool) -> dict[str, Any]:
        if isinstance(v, torch.Tensor):
            return self._tensor(key, v, reuse)
        return encode_plain(v)

    def _tensor(self, key: str, t: torch.Tensor, reuse: bool) -> dict[str, Any]:
        seen = self.written.get(id(t)) if reuse else None
        if seen is not None and seen[0]() is t:
            return dict(seen[1])
        if t.layout != torch.strided or t.is_meta or t.is_quantized or t.is_complex():
            return {"opaque": f"Tensor({t.layout}, {t.dtype})"}
        copy = torch.empty(t.shape, dtype=t.dtype, device="cpu")
        copy.copy_(t.detach())
        self.pending[key] = copy
        self.pending_bytes += copy.numel() * copy.element_size()
        leaf = {"tensor": key, "shard": len(self.shards), "shape": list(t.shape),
                "dtype": str(t.dtype).removeprefix("torch.")}
        self.written[id(t)] = (weakref.ref(t), leaf)
        self.tensors += 1
        if self.pending_bytes >= self.shard_bytes:
            self._flush()
        return leaf

    def _flush(self) -> None:
        if not self.pending:
            return
        from safetensors.torch import save_file

        name = SHARD.format(len(self.shards))
        path = self.dir / name
        save_file(self.pending, str(path))
        self.shards.append({"file": name, "bytes": path.stat().st_size, "tensors": len(self.pending)})
        self.pending, self.pending_bytes = {}, 0
        self.written = {k: v for k, v in self.written.items() if v[0]() is not None}

    def close(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Write the last shard, then the manifest (``manifest`` plus format, schema and shards)."""
        self._flush()
        full = {"format": FORMAT, "schema_version": SCHEMA_VERSION, **manifest, "shards": self.shards,
                "tensors": self.tensors, "bytes": sum(s["bytes"] for s in self.shards)}
        tmp = self.dir / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(full, indent=1, allow_nan=False), encoding="utf-8")
        os.replace(tmp, self.dir / MANIFEST)
        return full


def _prepare_folder(path: Path) -> None:
    """An empty folder for a new bundle: a missing one is made, an earlier recording replaced;
    any other non-empty folder is refused (never delete what torchaudit did not write)."""
    if path.exists() and not path.is_dir():
        raise RecordingError(f"--output {path}: is a file", "pass a folder for the recording")
    if path.is_dir():
        entries = list(path.iterdir())
        ours = [p for p in entries if p.name in (MANIFEST, MANIFEST + ".tmp") or
                (p.name.startswith("shard-") and p.suffix == ".safetensors")]
        if len(ours) != len(entries):
            raise RecordingError(f"--output {path}: the folder holds other files",
                                 "pass a new folder (or one holding an earlier recording, which is replaced)")
        for p in ours:  # the manifest first: a failure half way leaves a truncated bundle, not a stale one
            p.unlink()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RecordingError(f"--output {path}: cannot create the folder ({exc.strerror or exc})",
                             "pass a folder you can write to") from exc


def _structure(spec: Any) -> str:
    """The value's structure as text, for people reading the manifest (readers do not parse it)."""
    text = str(spec.tree).replace("\n", " ")
    return " ".join(text.split())[:500]


def encode_plain(v: Any) -> dict[str, Any]:
    """A leaf that is not a tensor, as JSON."""
    if v is None:
        return {"none": None}
    if isinstance(v, bool):
        return {"bool": v}
    if isinstance(v, int):
        return {"int": v}
    if isinstance(v, float):
        return {"float": v if math.isfinite(v) else repr(v)}
    if isinstance(v, str):
        return {"str": v}
    if isinstance(v, torch.dtype):
        return {"dtype": str(v).removeprefix("torch.")}
    if isinstance(v, torch.device):
        return {"device": str(v)}
    return {"opaque": type(v).__name__}


def decode_plain(leaf: dict[str, Any]) -> Any:
    """The value of a leaf :func:`encode_plain` wrote (``OPAQUE`` for one it could not)."""
    if "none" in leaf:
        return None
    for kind in ("bool", "int", "str"):
        if kind in leaf:
            return leaf[kind]
    if "float" in leaf:
        return float(leaf["float"])
    if "dtype" in leaf:
        dtype = getattr(torch, str(leaf["dtype"]), None)
        return dtype if isinstance(dtype, torch.dtype) else OPAQUE
    if "device" in leaf:
        return torch.device(str(leaf["device"]))
    return OPAQUE


class _Opaque:
    def __repr__(self) -> str:
        return "<not recorded>"


OPAQUE = _Opaque()  # a leaf the recording holds only by type name


class Bundle:
    """A bundle opened for reading; see :func:`open_bundle`."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._files: dict[int, Any] = {}

    @property
    def bytes(self) -> int:
        return int(self.manifest.get("bytes", 0))

    def leaves(self, encoded: Encoded) -> list[Any]:
        """The leaves of a stored value: tensors (CPU, memory-mapped) and plain values."""
        return [self._tensor(leaf) if "tensor" in leaf else decode_plain(leaf) for leaf in encoded["leaves"]]

    def _tensor(self, leaf: dict[str, Any]) -> torch.Tensor:
        shard = int(leaf["shard"])
        handle = self._files.get(shard)
        if handle is None:
            from safetensors import safe_open

            name = self.manifest["shards"][shard]["file"]
            try:
                handle = safe_open(str(self.path / name), framework="pt", device="cpu")
            except Exception as exc:  # noqa: BLE001 - a damaged shard is the user's file, not a bug
                raise RecordingError(f"recording {self.path}: shard {name} cannot be read ({exc})",
                                     "record the run again") from exc
            self._files[shard] = handle
        return handle.get_tensor(leaf["tensor"])

    def close(self) -> None:
        self._files.clear()


def open_bundle(path: str | Path, what: str = "recording") -> Bundle:
    """Open and check a bundle: its manifest (format, schema version, not made under ``--meta``)
    and that every shard is there at full length. Any problem is one :class:`RecordingError`."""
    p = Path(path)
    fix = "pass a folder written by 'torchaudit record' (and copied whole)"
    if not p.is_dir():
        raise RecordingError(f"{what} {path}: not found (a recording is a folder)", fix)
    manifest_path = p / MANIFEST
    if not manifest_path.is_file():
        shards = sorted(p.glob("shard-*.safetensors"))
        if shards:
            raise RecordingError(f"{what} {path} is truncated: it has {len(shards)} shard(s) but no {MANIFEST} "
                                 "(the recording did not finish)", "record the run again")
        raise RecordingError(f"{what} {path}: no {MANIFEST}, so it is not a torchaudit recording", fix)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecordingError(f"{what} {path} is truncated: {MANIFEST} is not complete JSON ({exc})",
                             "record the run again") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RecordingError(f"{what} {path}: {MANIFEST} is not a torchaudit recording's", fix)
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise RecordingError(f"{what} {path} has schema version {version}, newer than this torchaudit reads "
                             f"({SCHEMA_VERSION})", "upgrade torchaudit on this machine, or record with the same version")
    if manifest.get("meta"):
        raise RecordingError(f"{what} {path} was made under --meta: it holds no values to compare",
                             "record without --meta")
    for shard in manifest.get("shards", []):
        file = p / str(shard.get("file", ""))
        size = file.stat().st_size if file.is_file() else None
        if size is None:
            raise RecordingError(f"{what} {path} is truncated: shard {shard.get('file')} is missing",
                                 "copy the whole recording folder")
        if size != shard.get("bytes"):
            raise RecordingError(f"{what} {path} is truncated: shard {shard.get('file')} has {size} of "
                                 f"{shard.get('bytes')} bytes", "copy the whole recording folder")
    return Bundle(p, manifest)


def tensor_digest(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """A SHA-256 over names, dtypes, shapes and bytes, one tensor at a time (never all copied at once)."""
    h = hashlib.sha256()
    for name, t in tensors:
        h.update(f"{name}|{str(t.dtype).removeprefix('torch.')}|{tuple(t.shape)}|".encode())
        if t.is_meta or t.layout != torch.strided or t.is_complex() or t.is_quantized:
            continue
        data = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return h.hexdigest()
