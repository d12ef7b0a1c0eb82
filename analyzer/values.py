"""Walking nested values: tensors and numbers inside tuples, lists, dicts, named tuples,
dataclasses and model outputs. The one walker of the code base; every stage imports it.

The walk is torch's own, ``torch.utils._pytree`` (what ``torch.export`` and fx use): it knows
tuples, lists, dicts, ``OrderedDict``, ``defaultdict``, ``deque``, named tuples, ``torch.Size``,
``torch.return_types`` and every type registered with it (transformers' ``ModelOutput``
registers itself). Anything else is a leaf.

A dataclass instance that pytree does not know (a user's ``@dataclass`` returned from
``forward``) is walked here by its ``init`` fields, the fields ``pytree.register_dataclass``
would use, and rebuilt with ``dataclasses.replace``: registering the user's class with pytree
would change what ``torch.export`` does with it after the scan (and make the user's own
registration fail), so the class is left as it is.

A plain tensor, most values the lockstep engine sees, takes a fast path and never reaches
pytree.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch.utils import _pytree as pytree

_NUMBERS = (torch.Tensor, bool, int, float)


def _is_dataclass_instance(value: Any) -> bool:
    """A dataclass instance to walk by its fields; pytree's own ``TreeSpec`` (a dataclass whose
    ``__init__`` is its own: export graphs of vmapped code hand specs between nodes) is a leaf."""
    return hasattr(type(value), "__dataclass_fields__") and not isinstance(value, _SPECS)


_SPECS = tuple(t for t in (getattr(pytree, "TreeSpec", None), getattr(pytree, "LeafSpec", None)) if isinstance(t, type))


def _is_leaf(value: Any) -> bool:
    """A leaf for pytree and for us: not a container pytree knows, not a dataclass instance."""
    return isinstance(value, torch.Tensor) or (pytree.tree_is_leaf(value) and not _is_dataclass_instance(value))


def _fields_of(value: Any) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}


@dataclasses.dataclass(frozen=True)
class _Fields:
    """Leaf ``index`` of the outer pytree is a dataclass instance, walked by its fields."""

    index: int
    cls: type
    spec: Spec  # of the dict ``{field name: value}``
    instance: Any = dataclasses.field(compare=False)  # rebuilt from it: fields not walked stay


class Spec(NamedTuple):
    """How to rebuild a value from its leaves (see :func:`flatten`); equal specs mean the same
    structure: the same container types, lengths, dict keys and named-tuple or dataclass types."""

    tree: pytree.TreeSpec
    fields: tuple[_Fields, ...] = ()

    @property
    def num_leaves(self) -> int:
        return self.tree.num_leaves - len(self.fields) + sum(f.spec.num_leaves for f in self.fields)


_LEAF = Spec(pytree.treespec_leaf())


def flatten(value: Any) -> tuple[list[Any], Spec]:
    """The leaves of ``value`` in a stable order (dicts in key order), and its :class:`Spec`."""
    if _is_leaf(value):
        return [value], _LEAF
    outer, tree = pytree.tree_flatten(value)  # a dataclass pytree does not know is one of its leaves
    if not any(map(_is_dataclass_instance, outer)):
        return outer, Spec(tree)
    flat: list[Any] = []
    parts: list[_Fields] = []
    for i, leaf in enumerate(outer):
        if _is_dataclass_instance(leaf):
            inner, spec = flatten(_fields_of(leaf))
            parts.append(_Fields(i, type(leaf), spec, leaf))
            flat.extend(inner)
        else:
            flat.append(leaf)
    return flat, Spec(tree, tuple(parts))


def unflatten(leaves: Sequence[Any], spec: Spec) -> Any:
    """The value of structure ``spec`` holding ``leaves`` (the inverse of :func:`flatten`)."""
    if not spec.fields:
        return spec.tree.unflatten(leaves)
    outer: list[Any] = []
    pos = 0
    parts = iter(spec.fields)
    part = next(parts, None)
    for i in range(spec.tree.num_leaves):
        if part is not None and part.index == i:
            n = part.spec.num_leaves
            outer.append(dataclasses.replace(part.instance, **unflatten(leaves[pos : pos + n], part.spec)))
            pos += n
            part = next(parts, None)
        else:
            outer.append(leaves[pos])
            pos += 1
    return spec.tree.unflatten(outer)


def _all_leaves(value: Any) -> list[Any]:
    """``flatten(value)[0]`` without building a spec."""
    if _is_leaf(value):
        return [value]
    out = pytree.tree_leaves(value)
    return flatten(value)[0] if any(map(_is_dataclass_instance, out)) else out


def leaves(value: Any) -> list[Any]:
    """Tensors and numbers of a (nested) value, in a stable order (``None``, strings and other
    leaves left out)."""
    if isinstance(value, torch.Tensor):
        return [value]
    return [v for v in _all_leaves(value) if isinstance(v, _NUMBERS)]


def tensor_leaves(value: Any) -> list[torch.Tensor]:
    """The tensors of a (nested) value, in a stable order."""
    if isinstance(value, torch.Tensor):
        return [value]
    return [v for v in _all_leaves(value) if isinstance(v, torch.Tensor)]


def map_tensors(fn: Callable[[torch.Tensor], Any], value: Any) -> Any:
    """``value`` with ``fn`` applied to every tensor inside it; containers keep their types
    (named tuples, dataclasses, ``ModelOutput``); a value without tensors is returned as it is."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    flat, spec = flatten(value)
    if not any(isinstance(v, torch.Tensor) for v in flat):
        return value
    return unflatten([fn(v) if isinstance(v, torch.Tensor) else v for v in flat], spec)


def cloned(value: Any) -> Any:
    """``value`` with every tensor inside it cloned: for an op that writes into its inputs."""
    return map_tensors(torch.Tensor.clone, value)


def zip_map(fn: Callable[..., Any], value: Any, *others: Any) -> Any:
    """``fn(leaf, *other_leaves)`` leaf by leaf, in the structure of ``value``; ``None`` when
    an ``other`` has a different structure."""
    if _is_leaf(value) and all(map(_is_leaf, others)):
        return fn(value, *others)
    flat, spec = flatten(value)
    columns = [flat]
    for other in others:
        other_flat, other_spec = flatten(other)
        if other_spec != spec:
            return None
        columns.append(other_flat)
    return unflatten([fn(*row) for row in zip(*columns)], spec)


class _Text(str):
    """A leaf's description, shown without quotes (torch's ``treespec_pprint`` does the same)."""

    def __repr__(self) -> str:
        return str(self)


def describe(value: Any, leaf: Callable[[Any], str]) -> str:
    """``value`` written like Python, each leaf as ``leaf(v)``: ``Batch(x=Tensor[4,6]:float32, ...)``."""
    flat, spec = flatten(value)
    texts = [_Text(leaf(v)) for v in flat]
    if spec.tree.is_leaf() and not spec.fields:
        return texts[0]
    try:
        return repr(unflatten(texts, spec))
    except Exception:  # noqa: BLE001 - a container that will not hold text (torch.Size, a checking __post_init__)
        return f"{type(value).__name__}({', '.join(texts)})"
