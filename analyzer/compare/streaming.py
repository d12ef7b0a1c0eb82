"""Comparisons on weights streamed from disk (``--stream-weights``).

The model is a skeleton (:mod:`torchaudit.analyzer.load.skeleton`: parameters on meta, buffers
built by their modules), each side's graph is traced from a fake copy of it in the side's own
configuration, and the graph runs node by node as usual (:mod:`lockstep`) with one change:
where a node reads a weight, the weight is read from the safetensors files just then.

* a ``get_attr`` node of a parameter or buffer (every weight of a ``torch.export`` graph)
  reads it when it runs; the engine frees it after its last user, as any value. Such nodes
  run just before their first user (``FxSide`` orders them so, streamed or not), so a weight
  lives from the op that needs it to the last op that does;
* a ``call_module`` node (``nn.Linear`` in a plain fx graph) runs with its module's tensors
  read in for the call and put back to meta after it.

Each tensor is converted as the in-memory comparison converts it: first to the dtype of the
model's own tensor (``load_state_dict`` copies into the model's dtype), then to the side's
dtype and device (``Module.to``, which casts floating tensors only). Tied weights are read
under whichever of their names the checkpoint holds. A tensor no checkpoint holds and no
module built (a parameter missing from the files, a constant the tracer made on a fake
tensor) cannot be materialised: :meth:`SideWeights.missing` names them, and the comparison is
skipped saying which.
"""

from __future__ import annotations

import contextlib
import copy
import operator
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
import torch.fx
import torch.nn as nn

from torchaudit.analyzer.load.meta import is_valueless
from torchaudit.analyzer.load.weight_files import WeightFiles


@dataclass
class Streaming:
    """How this run's comparisons get their weights: from ``weights`` (diff's A), and
    ``other`` (diff's B), into copies of ``skeleton``; ``reason`` says why they stream."""

    skeleton: nn.Module
    weights: WeightFiles
    reason: str
    other: WeightFiles | None = None
    modules_read: set[str] = field(default_factory=set)  # modules whose weights were read, for progress
    modules_total: int = field(init=False)  # modules holding a weight of the checkpoint

    def __post_init__(self) -> None:
        self.modules_total = len({key.rpartition(".")[0] for key in self.weights.keys()})

    @property
    def files(self) -> list[WeightFiles]:
        """Every source: A's weights, and B's for ``diff``."""
        return [w for w in (self.weights, self.other) if w is not None]

    @property
    def bytes_read(self) -> int:
        return sum(w.bytes_read for w in self.files)

    def to_dict(self) -> dict[str, Any]:
        """The report's ``streamed_weights`` section."""
        return {
            "reason": self.reason,
            "checkpoints": [str(w.path) for w in self.files],
            "bytes": sum(w.total_bytes for w in self.files),
            "bytes_read": self.bytes_read,
        }


def placed_skeleton(skeleton: nn.Module, device: str, dtype: torch.dtype, own: torch.dtype, mode: str) -> nn.Module:
    """A copy of the skeleton as ``comparisons.placed`` places a live model: in ``dtype`` unless
    that is the model's own (then every tensor keeps its dtype), buffers on ``device``,
    parameters left on meta (read per use), in ``mode``."""
    work = copy.deepcopy(skeleton)
    if dtype != own:
        work.to(dtype=dtype)  # floating tensors only, meta parameters included (no data)
    for m in work.modules():
        for k, b in m._buffers.items():
            if b is not None and not b.is_meta:
                m._buffers[k] = b.to(device)
    return work.train(mode == "train")


class SideWeights:
    """One side's weights: the tensors of ``weights`` as the side's model holds them."""

    def __init__(self, skeleton: nn.Module, model: nn.Module, weights: WeightFiles, device: str,
                 read_by: set[str] | None = None) -> None:
        """``read_by`` collects the modules whose weights this side reads (for progress)."""
        self.skeleton, self.model, self.weights, self.device = skeleton, model, weights, torch.device(device)
        self.read_by = read_by if read_by is not None else set()
        self._key: dict[str, str | None] = {}
        tied: dict[int, list[str]] = {}
        for name, t in list(skeleton.named_parameters(remove_duplicate=False)) + list(skeleton.named_buffers(remove_duplicate=False)):
            tied.setdefault(id(t), []).append(name)
        for names in tied.values():
            key = next((n for n in names if n in weights), None)
            for n in names:
                self._key[n] = key

    def key(self, name: str) -> str | None:
        """The checkpoint key holding tensor ``name`` of the model (a tied weight: any of its names)."""
        return self._key.get(name, name if name in self.weights else None)

    def available(self, name: str) -> bool:
        return self.key(name) is not None or _real(_attr(self.model, name))

    def read(self, name: str) -> torch.Tensor:
        """Tensor ``name`` in the side's dtype and on its device: from the files, else the one
        the module built (a non-persistent buffer)."""
        placed = _attr(self.model, name)
        key = self.key(name)
        if key is None:
            if _real(placed):
                return placed
            raise KeyError(f"{name}: in no checkpoint file, and not built by its module")
        value = self.weights.read(key)
        self.read_by.add(key.rpartition(".")[0])
        own = _attr(self.skeleton, name)
        if isinstance(own, torch.Tensor):
            value = value.to(own.dtype)  # load_state_dict copies into the model's own dtype
        if isinstance(placed, torch.Tensor):
            value = value.to(device=self.device, dtype=placed.dtype)
        if isinstance(placed, nn.Parameter):
            value = nn.Parameter(value, requires_grad=placed.requires_grad)
        return value

    def missing(self, gm: torch.fx.GraphModule) -> list[str]:
        """The tensors the graph reads that this side cannot materialise."""
        out: list[str] = []
        for n in gm.graph.nodes:
            if n.op == "get_attr" and isinstance(_attr(gm, n.target), torch.Tensor):
                if not self.available(str(n.target)) and not _real(_attr(gm, n.target)):
                    out.append(str(n.target))
            elif n.op == "call_module":
                out.extend(name for name in _tensor_names(gm.get_submodule(str(n.target)), str(n.target))
                           if not self.available(name))
        return list(dict.fromkeys(out))

    @contextlib.contextmanager
    def materialised(self, module: nn.Module, prefix: str) -> Iterator[None]:
        """``module`` (at path ``prefix``) with its parameters and buffers read in, then put back."""
        saved: list[tuple[dict[str, Any], str, Any]] = []
        try:
            for path, m in module.named_modules(prefix=prefix):
                for table in (m._parameters, m._buffers):
                    for k, t in table.items():
                        if t is not None and not _real(t):
                            saved.append((table, k, t))
                            table[k] = self.read(f"{path}.{k}" if path else k)
            yield
        finally:
            for table, k, t in reversed(saved):
                table[k] = t


def weight_targets(gm: torch.fx.GraphModule) -> set[str]:
    """The ``get_attr`` targets of ``gm`` that hold no values (weights and buffers, fake in a
    graph traced from a fake copy): each is read per use. A real tensor the graph holds itself
    (a constant) is the graph's own, as :meth:`SideWeights.missing` counts it."""
    return {str(n.target) for n in gm.graph.nodes
            if n.op == "get_attr" and isinstance(_attr(gm, n.target), torch.Tensor) and not _real(_attr(gm, n.target))}


def _tensor_names(module: nn.Module, prefix: str) -> list[str]:
    return [f"{path}.{k}" if path else k
            for path, m in module.named_modules(prefix=prefix)
            for table in (m._parameters, m._buffers) for k, t in table.items() if t is not None]


def _attr(obj: object, name: str) -> Any:
    try:
        return operator.attrgetter(name)(obj)
    except AttributeError:
        return None


def _real(t: object) -> bool:
    return isinstance(t, torch.Tensor) and not is_valueless(t)
