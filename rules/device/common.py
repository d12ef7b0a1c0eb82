"""Shared predicates of the TA5xx family: tensor factories (forward-time code: rules/callgraph.py)."""

from __future__ import annotations

FACTORIES = {
    "zeros", "ones", "empty", "full", "arange", "range", "tensor", "rand", "randn", "randint",
    "randperm", "eye", "linspace", "logspace", "as_tensor", "scalar_tensor", "tril_indices", "triu_indices",
}


def factory_name(target: str) -> str | None:
    """``torch.zeros`` / ``torch._VariableFunctionsClass.zeros`` -> ``zeros``; else None."""
    if not target.startswith("torch."):
        return None
    parts = target.split(".")
    if len(parts) == 2 or (len(parts) == 3 and parts[1] == "_VariableFunctionsClass"):
        return parts[-1] if parts[-1] in FACTORIES else None
    return None
