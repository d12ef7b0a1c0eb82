"""Walking nested values: tensors and numbers inside tuples, lists, dicts and model outputs."""

from __future__ import annotations

from typing import Any, Iterator

import torch


def leaves(value: Any) -> Iterator[Any]:
    """Tensors and numbers of a (nested) value, in a stable order."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (bool, int, float)):
        yield value
    elif isinstance(value, dict):
        for k in value:
            yield from leaves(value[k])
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from leaves(v)
    elif hasattr(value, "to_tuple") and callable(value.to_tuple):  # transformers' ModelOutput
        yield from leaves(value.to_tuple())


def tensor_leaves(value: Any) -> list[torch.Tensor]:
    """The tensors of a (nested) value, in a stable order."""
    return [v for v in leaves(value) if isinstance(v, torch.Tensor)]


def cloned(value: Any) -> Any:
    """``value`` with every tensor inside lists, tuples and dicts cloned (named tuples kept as
    they are): for an op that writes into its inputs."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(cloned(v) for v in value)
    if isinstance(value, dict):
        return {k: cloned(v) for k, v in value.items()}
    return value
