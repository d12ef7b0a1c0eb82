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
