"""Load a checkpoint safely: what it holds (keys, shapes, dtypes), and what its pickle imports.

Order of safety (DESIGN.md, Checkpoints):

* ``.safetensors``: the header is read and checked as the safetensors library checks it
  (:mod:`torchaudit.analyzer.load.safetensors_file`); the structure (``entries``) comes from the
  header alone, tensor values are read lazily, one at a time, only when a rule asks.
* a ``torch.save`` file (zip or legacy) or a raw pickle: first the pickle's opcodes are read
  to list the globals it would import (:mod:`torchaudit.analyzer.load.pickle_scan`). If any is
  outside PyTorch's weights-only allowlist, the file is NOT unpickled (unless ``trust``);
  otherwise ``torch.load(weights_only=True)``, memory-mapped for zip files.

Wrappers (``state_dict``, ``model_state_dict``, ``model``, a Lightning ``.ckpt``) are unwrapped
and the key used is recorded. Files that are not checkpoints raise :class:`CheckpointError`
with one line saying what the file is and what was expected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import struct
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

import torch
import torch.nn as nn

from torchaudit.analyzer.load.checkpoint_files import EXPECTED, not_a_checkpoint, sniff, suffix_note, truncated
from torchaudit.analyzer.load.pickle_scan import PickleGlobal, allowed_globals, classify, is_module_class, scan_pickle
from torchaudit.analyzer.load.safetensors_file import LazySafetensors, read_header
from torchaudit.analyzer.load.zip_archive import Member, ZipArchive, read_zip
from torchaudit.errors import CheckpointError

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch/serialization.py MAGIC_NUMBER (legacy format)


@dataclass(frozen=True)
class TensorEntry:
    """Shape and dtype of one checkpoint tensor: all a structure check needs."""

    shape: tuple[int, ...]
    dtype: torch.dtype

    def describe(self) -> str:
        return f"{str(self.dtype).removeprefix('torch.')}[{', '.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class LoadStatus:
    """Whether the checkpoint went into a copy of the model with ``strict=True``."""

    ok: bool
    error: str | None = None  # the first line of what load_state_dict raised
    prefix_fix: str | None = None  # "strip 'module.'" / "add 'model.'": applied to the keys first


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint holds. ``entries`` is ``None`` when the file was not unpickled."""

    path: Path
    format: str  # "safetensors", "zip", "legacy", "pickle"
    wrapper_key: str | None = None  # the key unwrapped ("state_dict", "model", ...), None = top level
    entries: Mapping[str, TensorEntry] | None = None
    tensors: Mapping[str, torch.Tensor] | None = field(default=None, repr=False)
    imports: tuple[str, ...] = ()  # every global its pickles would import, allowlisted or not, sorted
    unsafe_globals: tuple[PickleGlobal, ...] = ()  # outside the allowlist, not module classes
    module_classes: tuple[str, ...] = ()  # nn.Module classes the pickle imports (TA310)
    is_pickled_module: bool = False
    trusted: bool = False  # unpickled with weights_only=False (--trust-checkpoint)
    not_loaded_reason: str | None = None
    archive_problems: tuple[str, ...] = ()  # how zip readers disagree about the file (TA605)
    damage: str | None = None  # where a pickle breaks (its globals before the break still count)
    producer: str | None = None  # "lightning" for a Lightning .ckpt
    metadata: Mapping[str, str] = field(default_factory=dict)
    loaded_into_model: LoadStatus | None = None
    extra_state: Mapping[str, Any] = field(default_factory=dict, repr=False)  # non-tensor `*._extra_state`
    suffix_mismatch: str | None = None  # "named .pt but is a safetensors file" (checkpoint_files.suffix_note)
    shards: tuple[Path, ...] = ()  # a sharded checkpoint's files, in the index's order (analyzer/load/sharded.py)

    @property
    def loaded(self) -> bool:
        return self.entries is not None

    def describe(self) -> dict[str, Any]:
        """The report's view of the checkpoint (``target.checkpoint_info``), printable: its
        strings (member names, load errors quoting keys) come from the file."""
        from torchaudit.report import printable_value

        status = self.loaded_into_model
        return printable_value({
            "path": str(self.path),
            "format": self.format,
            "wrapper_key": self.wrapper_key,
            "producer": self.producer,
            "tensors": len(self.entries) if self.entries is not None else None,
            "unpickled": self.format != "safetensors" and self.loaded,
            "trusted": self.trusted,
            "pickled_module": self.is_pickled_module,
            "not_loaded_reason": self.not_loaded_reason,
            "archive_problems": list(self.archive_problems),
            "damage": self.damage,
            "suffix_mismatch": self.suffix_mismatch,
            "shards": [p.name for p in self.shards],
            "strict_load": None
            if status is None
            else {"ok": status.ok, "error": status.error, "prefix_fix": status.prefix_fix},
        })


def load_checkpoint(
    path: str | Path, *, trust: bool = False, model: nn.Module | None = None, scan_only: bool = False
) -> Checkpoint:
    """Read ``path`` as safely as its format allows (see the module docs).

    ``trust`` unpickles files that import globals outside the allowlist (a whole pickled
    module, or worse) with ``weights_only=False``. ``model``, when given, names the classes a
    pickled module of that model would import, so they count as TA310 rather than TA601.
    ``scan_only`` stops before anything is unpickled: what the pickle scan found, and why the
    file would not be loaded (``not_loaded_reason``), with no entries.

    A directory (its single weights file, or its ``*.index.json``) and an index file are
    sharded checkpoints: :func:`torchaudit.analyzer.load.sharded.load_sharded`.
    """
    path = Path(path)
    if path.is_dir() or path.name.endswith(".index.json"):
        from torchaudit.analyzer.load.sharded import load_sharded

        return load_sharded(path, trust=trust, model=model)
    kind = sniff(path)
    if kind == "safetensors":
        return _load_safetensors(path)
    scanned = _scan_zip(path) if kind == "zip" else _scan_stream(path, kind)
    kind = scanned.kind
    outside = classify(scanned.globals, allowed_globals())
    classes = tuple(sorted(g.name for g in outside if not g.dangerous and is_module_class(g.name, model)))
    unsafe = tuple(g for g in outside if g.name not in classes)
    base = Checkpoint(
        path=path, format=kind, imports=tuple(sorted(scanned.globals)), unsafe_globals=unsafe, module_classes=classes,
        is_pickled_module=bool(classes), archive_problems=scanned.problems, damage=scanned.damage,
        suffix_mismatch=suffix_note(path, kind),
    )
    if unsafe and not trust:
        return dataclasses.replace(base, not_loaded_reason="not unpickled: its pickle imports globals outside the weights-only allowlist (TA601)")
    if scanned.problems:  # never loaded, trusted or not: which member torch reads is not the question the user answered
        return dataclasses.replace(base, not_loaded_reason="not loaded: zip readers disagree about what this archive holds (TA605)")
    if scanned.damage:
        raise truncated(path, _KIND_NAMES[kind], scanned.damage)
    if scanned.torchscript:
        raise CheckpointError(
            f"{path} is a TorchScript archive (torch.jit.save), not a state dict",
            "save model.state_dict() with torch.save or safetensors and pass that file",
        )
    if classes and not trust:
        return dataclasses.replace(base, not_loaded_reason="not unpickled: it is a whole pickled module (--trust-checkpoint loads it, for files you made)")
    if scan_only:
        return base
    obj = _unpickle(path, kind, weights_only=not (unsafe or classes), mmap=kind == "zip" and not scanned.compressed)
    state, wrapper, producer, is_module = unwrap(obj, path)
    entries = {k: TensorEntry(tuple(v.shape), v.dtype) for k, v in state.items() if isinstance(v, torch.Tensor)}
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    extra = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    return dataclasses.replace(
        base,
        is_pickled_module=bool(classes) or is_module,
        wrapper_key=wrapper,
        entries=entries,
        tensors=tensors,
        trusted=bool(unsafe or classes),
        producer=producer,
        extra_state=extra,
    )


def _load_safetensors(path: Path) -> Checkpoint:
    header = read_header(path)
    entries = {k: TensorEntry(header.tensors[k].shape, header.tensors[k].dtype) for k in sorted(header.tensors)}
    return Checkpoint(path=path, format="safetensors", entries=entries, tensors=LazySafetensors(path, header),
                      metadata=header.metadata, suffix_mismatch=suffix_note(path, "safetensors"))


_KIND_NAMES = {"zip": "torch.save zip", "legacy": "legacy torch.save", "pickle": "pickle", "tar": "legacy torch.save tar"}


@dataclass(frozen=True)
class _Scanned:
    """What reading every pickle of a file found, before anything is unpickled."""

    kind: str  # "zip", "legacy", "pickle", "tar"
    globals: set[str]
    damage: str | None = None  # the first pickle that breaks, and where
    problems: tuple[str, ...] = ()  # zip ambiguities (TA605)
    compressed: bool = False  # compressed zip records: torch.load(mmap=True) would hand back their raw bytes
    torchscript: bool = False


def _scan_zip(path: Path) -> _Scanned:
    """Every pickle member of a torch zip, read from the bytes torch's reader would use.

    Members named ``*.pkl`` (any case) are what torch can unpickle: each is scanned, and one
    that breaks still gives the globals read before the break. Other members are torch's raw
    storage records; one that nevertheless parses as a whole pickle is listed too.
    """
    archive = read_zip(path)
    names = [m.raw_name for m in archive.members]
    bombs = [m for m in archive.members if m.inflates_like_a_bomb]
    if bombs:
        m = bombs[0]
        raise CheckpointError(
            f"{path}: member {m.name} inflates {m.compressed_size:,} bytes to {m.size:,} (a compression bomb?); "
            "torchaudit does not inflate it",
            "torch.save never compresses: save the checkpoint again with torch.save",
        )
    if not any(m.is_pickle for m in archive.members):
        raise CheckpointError(f"{path} is a zip archive without a pickle inside, not a torch.save checkpoint", EXPECTED)
    found: set[str] = set()
    damage = None
    for member in archive.members:
        if not member.is_pickle and not _starts_like_a_pickle(archive, member):
            continue
        try:
            with archive.open(member) as fh:
                scan = scan_pickle(fh, member.size)
        except OSError as exc:  # a damaged deflate stream
            damage = damage or f"{member.name}: {exc}"
            continue
        if member.is_pickle or not scan.broken:
            found |= scan.globals
        if member.is_pickle and damage is None:
            if scan.broken:
                damage = f"the pickle {member.name} breaks {scan.broken}"
            elif not archive.crc_ok(member):
                damage = f"the CRC of {member.name} does not match its bytes"
    torchscript = any(n.lower().endswith(b"constants.pkl") or b"/code/" in n for n in names)
    return _Scanned("zip", found, damage, tuple(archive.problems), bool(archive.compressed), torchscript)


def _starts_like_a_pickle(archive: ZipArchive, member: Member) -> bool:
    """A record whose first bytes are a PROTO opcode (protocol 2-5)."""
    if member.size < 3:
        return False
    with archive.open(member) as fh:
        head = fh.read(2)
    return head[:1] == b"\x80" and 2 <= head[1] <= 5


def _scan_stream(path: Path, kind: str) -> _Scanned:
    """A legacy ``torch.save`` file, a raw pickle or a pre-0.4 tar, pickle by pickle.

    torch's ``_legacy_load`` reads the magic number as the *value* of the first pickle, then
    the protocol, the system info, the object and the storage keys, five pickles in a row;
    ``pickle.load`` reads only the first. Every pickle of the stream is scanned while they
    parse; the first that breaks is where the stream's damage is.
    """
    if kind == "tar":
        return _scan_tar(path)
    size = path.stat().st_size
    found: set[str] = set()
    with open(path, "rb") as fh:
        first = scan_pickle(fh, size)
        found |= first.globals
        if first.broken and not first.globals:  # no pickle (one that imports nothing cannot run anything)
            raise not_a_checkpoint(path)
        if first.broken:  # a "broken" pickle is still a pickle: unpickling runs it up to the break
            return _Scanned("pickle", found, f"the pickle breaks {first.broken}")
        legacy = first.value == _MAGIC_NUMBER
        damage = None
        for n in range(2, 6 if legacy else 2 + _MORE_PICKLES):
            if fh.tell() >= size:
                break
            scan = scan_pickle(fh, size - fh.tell())
            if scan.broken:
                if legacy:  # torch reads all five: a break in one of them is damage
                    found |= scan.globals
                    damage = f"pickle {n} of 5 breaks {scan.broken}"
                break  # after a raw pickle: not a pickle torch or pickle.load would read
            found |= scan.globals
    return _Scanned("legacy" if legacy else "pickle", found, damage)


_MORE_PICKLES = 1000  # pickles read after a raw one: neither torch.load nor pickle.load reads any of them


_LEGACY_STORAGE_BYTES = {  # element sizes of torch's legacy storage classes (torch/storage.py _LegacyStorage)
    "Double": 8, "Float": 4, "Half": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1, "Byte": 1, "Bool": 1,
    "BFloat16": 2, "ComplexDouble": 16, "ComplexFloat": 8,
}


def _scan_tar(path: Path) -> _Scanned:
    """A pre-0.4 ``torch.save`` tar (``legacy_load`` in torch/serialization.py): ``storages``
    (a count, then per storage a pickle and its raw bytes), ``tensors`` (a count, then per
    tensor a pickle and fixed-size fields) and ``pickle``; every other member too."""
    found: set[str] = set()
    damage = None
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar.getmembers():
                if not info.isfile():
                    continue
                fh = tar.extractfile(info)
                if fh is None:
                    continue
                with fh:
                    globals_, broken = _scan_tar_member(info.name, fh, info.size)
                found |= globals_
                if broken and info.name in ("storages", "tensors", "pickle"):
                    damage = damage or f"its member {info.name!r} breaks {broken}"
    except (tarfile.TarError, OSError) as exc:
        raise truncated(path, "legacy torch.save tar", str(exc)) from None
    return _Scanned("tar", found, damage)


def _scan_tar_member(name: str, fh: IO[bytes], size: int) -> tuple[set[str], str | None]:
    found: set[str] = set()

    def pickle_() -> Any:
        scan = scan_pickle(fh, size - fh.tell())
        found.update(scan.globals)
        if scan.broken:
            raise _TarBreak(scan.broken)
        return scan

    try:
        if name not in ("storages", "tensors"):
            pickle_()
            return found, None
        count = pickle_().value
        if not isinstance(count, int) or count < 0:
            raise _TarBreak("its count is not a number")
        for _ in range(count):
            if fh.tell() >= size:
                raise _TarBreak(f"it ends before its {count} entries")
            entry = pickle_()
            if name == "storages":
                kinds = [g.rsplit(".", 1)[-1].removesuffix("Storage") for g in entry.globals if g.endswith("Storage")]
                width = _LEGACY_STORAGE_BYTES.get(kinds[0]) if len(kinds) == 1 else None
                if width is None:
                    raise _TarBreak("a storage of an unknown type")
                (numel,) = struct.unpack("<q", fh.read(8))
                if numel < 0:
                    raise _TarBreak("a storage has a negative size")
                fh.seek(numel * width, io.SEEK_CUR)
            else:
                (ndim,) = struct.unpack("<i", fh.read(4))
                if ndim < 0:
                    raise _TarBreak("a tensor has a negative number of dimensions")
                fh.seek(4 + 16 * ndim + 8, io.SEEK_CUR)
        if name == "storages":
            pickle_()  # the storage views
    except _TarBreak as exc:
        return found, str(exc)
    except struct.error:
        return found, "it ends inside a record"
    return found, None


class _TarBreak(Exception):
    pass


def _unpickle(path: Path, kind: str, *, weights_only: bool, mmap: bool = False) -> Any:  # whatever the file pickled
    try:
        if kind == "pickle":  # a raw pickle stream: torch.load would read it as the legacy magic number
            with open(path, "rb") as fh:
                if weights_only:
                    from torch._weights_only_unpickler import Unpickler

                    return Unpickler(fh, encoding="utf-8").load()
                import pickle

                return pickle.load(fh)  # --trust-checkpoint: the user vouched for this file
        with _named_for_torch(path) as name:
            try:
                return torch.load(name, map_location="cpu", weights_only=weights_only, mmap=mmap)
            except RuntimeError as exc:
                if not mmap or "mmap" not in str(exc):
                    raise
                # zip files from old torch versions are not aligned for mmap: read them into memory
                return torch.load(name, map_location="cpu", weights_only=weights_only, mmap=False)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the file makes torch.load raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} could not be loaded as a {kind} checkpoint: {first}", EXPECTED) from None


@contextlib.contextmanager
def _named_for_torch(path: Path) -> Iterator[Path]:
    """``path`` under a name torch.load reads by content: it sends every path ending in
    ``.safetensors`` to the safetensors library (torch/serialization.py ``load``), so a
    torch.save file with that suffix goes through a link named ``.pt``."""
    if not path.name.endswith(".safetensors"):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="torchaudit-") as tmp:
        link = Path(tmp) / "checkpoint.pt"
        link.symlink_to(path.resolve())
        yield link


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and all(
        isinstance(k, str) and (isinstance(v, torch.Tensor) or k.endswith("_extra_state")) for k, v in obj.items()
    )


def unwrap(obj: object, path: Path) -> tuple[Mapping[str, Any], str | None, str | None, bool]:
    """``(state dict, wrapper key, producer, whether it was a module)`` of a loaded object."""
    if isinstance(obj, nn.Module):
        return obj.state_dict(), None, None, True
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state dict", "save model.state_dict() and pass that file"
        )
    if _is_state_dict(obj):
        return obj, None, None, False
    producer = "lightning" if any("lightning_version" in str(k) for k in obj) else None
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, nn.Module):
            return inner.state_dict(), key, producer, True
        if inner is not None and _is_state_dict(inner):
            return inner, key, producer, False
    keys = ", ".join(repr(k) for k in list(obj)[:8])
    raise CheckpointError(
        f"{path} holds a dict ({keys}) with no state dict under {'/'.join(WRAPPER_KEYS)}",
        "save model.state_dict() (or a dict with it under 'state_dict') and pass that file",
    )
