"""Match a checkpoint's keys against a model's state dict: by name, or through a known prefix.

Structure checks use :class:`TensorEntry` (shape and dtype) only, so they work on a model
built on the ``meta`` device and on a safetensors header without reading any tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Mapping

import torch
import torch.nn as nn

from torchaudit.analyzer.load.checkpoint import Checkpoint, LoadStatus, TensorEntry

# prefix -> (where it comes from, the one-line fix when the checkpoint has it and the model not)
PREFIXES = {
    "module.": (
        "DataParallel/DistributedDataParallel",
        "torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(state_dict, 'module.') before load_state_dict",
    ),
    "_orig_mod.": (
        "torch.compile",
        "state_dict = {k.removeprefix('_orig_mod.'): v for k, v in state_dict.items()} before load_state_dict "
        "(or save model._orig_mod.state_dict())",
    ),
    "model.": (
        "a Lightning module or a wrapper class",
        "state_dict = {k.removeprefix('model.'): v for k, v in state_dict.items()} before load_state_dict",
    ),
}


@dataclass(frozen=True)
class Alignment:
    """How checkpoint keys map onto model keys, and what is left over on each side."""

    to_model: dict[str, str]  # checkpoint key -> model key, for keys both have
    missing: tuple[str, ...]  # model keys the checkpoint lacks
    unexpected: tuple[str, ...]  # checkpoint keys the model lacks
    prefix: str | None = None  # the prefix that explains the difference
    prefix_side: str | None = None  # "checkpoint": only the checkpoint has it; "model": only the model

    def describe_fix(self) -> str:
        if self.prefix is None:
            return ""
        if self.prefix_side == "checkpoint":
            return PREFIXES[self.prefix][1]
        attr = self.prefix.rstrip(".")
        return f"load into the inner model: model.{attr}.load_state_dict(state_dict), or save the wrapped model's state dict"


def model_entries(model: nn.Module) -> dict[str, TensorEntry]:
    """Shape and dtype of every state-dict entry of a model (works on the meta device)."""
    return {k: TensorEntry(tuple(v.shape), v.dtype) for k, v in model.state_dict(keep_vars=True).items() if hasattr(v, "shape")}


def tied_groups(model: nn.Module) -> list[tuple[str, ...]]:
    """State-dict keys that name one tensor (tied weights: ``lm_head.weight`` is
    ``transformer.wte.weight``), each group in state-dict order; works on the meta device."""
    groups: dict[int, list[str]] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        if hasattr(value, "shape"):
            groups.setdefault(id(value), []).append(key)
    return [tuple(keys) for keys in groups.values() if len(keys) > 1]


def filled_by_tie(missing: Iterable[str], present: Iterable[str], groups: list[tuple[str, ...]]) -> dict[str, str]:
    """Missing model keys that a tied key the checkpoint has fills anyway: ``{missing: present}``.
    ``load_state_dict`` copies into the one shared tensor under the key it finds
    (``Module._load_from_state_dict``, ``param.copy_``), so both names get the value; it still
    lists the other name in ``missing_keys``."""
    have = set(present)
    out: dict[str, str] = {}
    for group in groups:
        source = next((k for k in group if k in have), None)
        if source is not None:
            out.update((k, source) for k in group if k not in have)
    return {k: out[k] for k in missing if k in out}


def _match(model_keys: frozenset[str], ckpt_keys: list[str], strip: str, add: str) -> dict[str, str]:
    out = {}
    for k in ckpt_keys:
        if strip and not k.startswith(strip):
            continue
        mk = add + k[len(strip):]
        if mk in model_keys:
            out[k] = mk
    return out


def align(model: Mapping[str, TensorEntry], ckpt: Mapping[str, TensorEntry]) -> Alignment:
    """Plain key match, unless stripping or adding one known prefix matches clearly more keys."""
    return _align_cached(tuple(model), tuple(ckpt))


@lru_cache(maxsize=8)
def _align_cached(model_order: tuple[str, ...], ckpt_keys: tuple[str, ...]) -> Alignment:
    model_keys = frozenset(model_order)
    keys = list(ckpt_keys)
    best = _match(model_keys, keys, "", "")
    prefix = side = None
    for p in PREFIXES:
        for strip, add, where in ((p, "", "checkpoint"), ("", p, "model")):
            m = _match(model_keys, keys, strip, add)
            # a prefix must explain most of the difference, not shave off a few keys
            if len(m) > len(best) and len(m) >= 0.5 * max(len(model_keys), 1) + len(best) * 0.5:
                best, prefix, side = m, p, where
    matched = set(best.values())
    return Alignment(
        to_model=best,
        missing=tuple(k for k in model_order if k not in matched),
        unexpected=tuple(k for k in keys if k not in best),
        prefix=prefix,
        prefix_side=side,
    )


def load_into_copy(model: nn.Module, ckpt: Checkpoint) -> tuple[nn.Module | None, LoadStatus]:
    """Load the checkpoint into a deep copy of ``model`` with ``strict=True``.

    When a known prefix explains the key difference, the keys are renamed first and the
    status says so. The user's model is never touched.
    """
    from torchaudit.analyzer.safety import model_copy

    if ckpt.tensors is None or ckpt.entries is None:
        return None, LoadStatus(False, ckpt.not_loaded_reason or "the checkpoint was not unpickled")
    al = align(model_entries(model), ckpt.entries)
    fix = None
    # load_state_dict(strict=True) only names the keys the model lacks, and fails on them: their
    # values are never read, so they are not read from the file either (80,000 stray keys)
    unread, stray = torch.empty(0), set(al.unexpected)
    state: dict[str, object] = {k: unread if k in stray else ckpt.tensors[k] for k in ckpt.entries}
    state.update(ckpt.extra_state)
    if al.prefix:
        fix = f"{'strip' if al.prefix_side == 'checkpoint' else 'add'} {al.prefix!r}"
        state = {_renamed(k, al): v for k, v in state.items()}
    for key, source in filled_by_tie(al.missing, state, tied_groups(model)).items():
        state[key] = state[source]  # a tied weight stored once: the load fills both names (see filled_by_tie)
    copy = model_copy(model)
    try:
        copy.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        text = " ".join(str(exc).split())
        return None, LoadStatus(False, text[:300] + ("..." if len(text) > 300 else ""), fix)
    return copy, LoadStatus(True, None, fix)


def _renamed(key: str, al: Alignment) -> str:
    if key in al.to_model:
        return al.to_model[key]
    p = al.prefix or ""
    if al.prefix_side == "checkpoint":
        return key.removeprefix(p)
    return p + key


def owner(key: str) -> tuple[str, str]:
    """``("encoder.fc", "weight")`` for ``"encoder.fc.weight"``; the root module is ``""``."""
    mod, _, name = key.rpartition(".")
    return mod, name


MAX_GROUPS = 50  # findings a key-list rule (TA301, TA302) writes before it groups by a shorter module path


def by_owner(keys: Iterable[str], limit: int = MAX_GROUPS) -> dict[str, list[str]]:
    """State-dict keys grouped by the module that owns them: ``{module: [names below it]}``.

    When that makes more than ``limit`` groups (80,000 keys of 80,000 modules), the modules are
    cut to the longest path prefix that makes at most ``limit`` groups (``blocks``, then the
    root ``""``), and each name is the rest of its key (``0.weight``): one finding per group,
    never one per key."""
    keys = list(keys)
    mods = {key.rpartition(".")[0] for key in keys}
    if len(mods) <= limit:
        groups: dict[str, list[str]] = {}
        for key in keys:
            mod, _, name = key.rpartition(".")
            groups.setdefault(mod, []).append(name)
        return groups
    depth = max(mod.count(".") + 1 for mod in mods)
    while depth > 0 and len({".".join(mod.split(".")[:depth]) for mod in mods}) > limit:
        depth -= 1
    cut: dict[str, list[str]] = {}
    for key in keys:
        parts = key.split(".")
        mod = ".".join(parts[: min(depth, len(parts) - 1)])
        cut.setdefault(mod, []).append(key[len(mod) + 1:] if mod else key)
    return cut


def listing(names: list[str], limit: int = 8) -> str:
    """``"a, b, c"``, or ``"a, b, ... and 79,994 more"`` past ``limit`` names."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])} and {len(names) - limit:,} more"


def prepare_checkpoint(model: nn.Module, path: str, *, trust: bool = False) -> tuple[Checkpoint, nn.Module]:
    """Load ``path`` safely and, where it loads, into a copy of ``model`` with ``strict=True``.

    Returns the checkpoint (its ``loaded_into_model`` says how the strict load went) and the
    model the later stages should use: the loaded copy, or ``model`` itself when it did not load.
    """
    from dataclasses import replace

    from torchaudit.analyzer.load.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, trust=trust, model=model)
    from torchaudit.analyzer.load.meta import has_no_values

    if has_no_values(model):  # meta device or --meta (fake tensors): never read tensor data
        return replace(ckpt, loaded_into_model=LoadStatus(False, "not loaded into the model: it has no tensor values (--meta or the meta device)")), model
    loaded, status = load_into_copy(model, ckpt)
    return replace(ckpt, loaded_into_model=status), (loaded if loaded is not None else model)
