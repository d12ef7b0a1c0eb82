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

import dataclasses
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from torchaudit.analyzer.load.checkpoint_files import EXPECTED, not_a_checkpoint, sniff, suffix_note, truncated
from torchaudit.analyzer.load.pickle_scan import PickleGlobal, allowed_globals, classify, is_module_class, scan_stream
from torchaudit.analyzer.load.safetensors_file import LazySafetensors, read_header
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
    producer: str | None = None  # "lightning" for a Lightning .ckpt
    metadata: Mapping[str, str] = field(default_factory=dict)
    loaded_into_model: LoadStatus | None = None
    extra_state: Mapping[str, Any] = field(default_factory=dict, repr=False)  # non-tensor `*._extra_state`
    suffix_mismatch: str | None = None  # "named .pt but is a safetensors file" (checkpoint_files.suffix_note)

    @property
    def loaded(self) -> bool:
        return self.entries is not None

    def describe(self) -> dict[str, Any]:
        """The report's view of the checkpoint (``target.checkpoint_info``)."""
        status = self.loaded_into_model
        return {
            "path": str(self.path),
            "format": self.format,
            "wrapper_key": self.wrapper_key,
            "producer": self.producer,
            "tensors": len(self.entries) if self.entries is not None else None,
            "unpickled": self.format != "safetensors" and self.loaded,
            "trusted": self.trusted,
            "pickled_module": self.is_pickled_module,
            "not_loaded_reason": self.not_loaded_reason,
            "suffix_mismatch": self.suffix_mismatch,
            "strict_load": None
            if status is None
            else {"ok": status.ok, "error": status.error, "prefix_fix": status.prefix_fix},
        }


def load_checkpoint(path: str | Path, *, trust: bool = False, model: nn.Module | None = None) -> Checkpoint:
    """Read ``path`` as safely as its format allows (see the module docs).

    ``trust`` unpickles files that import globals outside the allowlist (a whole pickled
    module, or worse) with ``weights_only=False``. ``model``, when given, names the classes a
    pickled module of that model would import, so they count as TA310 rather than TA601.
    """
    path = Path(path)
    kind = sniff(path)
    if kind == "safetensors":
        return _load_safetensors(path)
    if kind == "zip":
        pickles = _zip_pickles(path)
    else:
        pickles = _stream_pickles(path)
        kind = "legacy" if pickles[1] else "pickle"
    names: set[str] = set().union(*pickles[0]) if pickles[0] else set()
    outside = classify(names, allowed_globals())
    classes = tuple(sorted(g.name for g in outside if not g.dangerous and is_module_class(g.name, model)))
    unsafe = tuple(g for g in outside if g.name not in classes)
    base = Checkpoint(path=path, format=kind, imports=tuple(sorted(names)), unsafe_globals=unsafe, module_classes=classes, is_pickled_module=bool(classes))
    if (unsafe or classes) and not trust:
        if unsafe:
            reason = "not unpickled: its pickle imports globals outside the weights-only allowlist (TA601)"
        else:
            reason = "not unpickled: it is a whole pickled module (--trust-checkpoint loads it, for files you made)"
        return dataclasses.replace(base, not_loaded_reason=reason)
    obj = _unpickle(path, kind, weights_only=not (unsafe or classes))
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


def _zip_pickles(path: Path) -> tuple[list[set[str]], bool]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
                raise CheckpointError(
                    f"{path} is a TorchScript archive (torch.jit.save), not a state dict",
                    "save model.state_dict() with torch.save or safetensors and pass that file",
                )
            pkls = [n for n in names if n.endswith(".pkl")]
            if not pkls:
                raise CheckpointError(f"{path} is a zip archive without a pickle inside, not a torch.save checkpoint", EXPECTED)
            found = []
            for name in pkls:
                try:
                    found.append(scan_stream(io.BytesIO(zf.read(name)))[0])
                except ValueError as exc:
                    raise truncated(path, "torch.save zip", f"{name}: {exc}") from None
    except zipfile.BadZipFile as exc:
        raise truncated(path, "zip (torch.save)", str(exc)) from None
    return found, True


def _stream_pickles(path: Path) -> tuple[list[set[str]], bool]:
    """A legacy ``torch.save`` file is five pickles (magic, protocol, sys info, object, storage
    keys) followed by raw storage bytes; anything else is read as one raw pickle."""
    found: list[set[str]] = []
    with open(path, "rb") as fh:
        try:
            names, first = scan_stream(fh)
            found.append(names)
            legacy = first == _MAGIC_NUMBER
            for _ in range(4 if legacy else 0):  # protocol, sys info, the object, storage keys
                found.append(scan_stream(fh)[0])
        except ValueError as exc:
            fh.seek(0)
            if fh.read(1) != b"\x80":  # protocol 0/1 guess that was wrong: say what it is
                raise not_a_checkpoint(path) from None
            raise truncated(path, "pickle", str(exc)) from None
    return found, legacy


def _unpickle(path: Path, kind: str, *, weights_only: bool) -> Any:  # whatever the file pickled
    try:
        if kind == "pickle":  # a raw pickle stream: torch.load would read it as the legacy magic number
            with open(path, "rb") as fh:
                if weights_only:
                    from torch._weights_only_unpickler import Unpickler

                    return Unpickler(fh, encoding="utf-8").load()
                import pickle

                return pickle.load(fh)  # --trust-checkpoint: the user vouched for this file
        try:
            return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=kind == "zip")
        except RuntimeError as exc:
            if kind != "zip" or "mmap" not in str(exc):
                raise
            # zip files from old torch versions are not aligned for mmap: read them into memory
            return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=False)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the file makes torch.load raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} could not be loaded as a {kind} checkpoint: {first}", EXPECTED) from None


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
