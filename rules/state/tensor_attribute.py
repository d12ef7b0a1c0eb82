"""TA201: a plain tensor attribute that ``state_dict()`` does not capture."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch

from torchaudit.report import Finding, Location, Severity
from torchaudit.rules import astutil
from torchaudit.rules.engine import Rule, register

if TYPE_CHECKING:
    from torchaudit.analyzer.context import AuditContext

_GENERATED = ("_tensor_constant", "lifted_tensor_")


def _resolve(model: torch.nn.Module, dotted: str) -> object:
    obj: object = model
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


@register
class PlainTensorAttribute(Rule):
    """
    What it finds:
        A tensor stored as a plain attribute (`self.scale = torch.ones(3)`) and used by
        `forward`: neither a parameter nor a registered buffer. In the fx graph it is a
        `get_attr` node named by its dotted path (`block.scale`) that is in neither
        `named_parameters()` nor `named_buffers()`. Without a graph, every plain tensor
        attribute of the module tree is reported.

    Why it matters:
        `state_dict()` does not save it, `load_state_dict` does not restore it, and
        `model.to(device)` / `.half()` do not move or cast it: a reloaded or moved model
        computes with a different (initial, or CPU, or float32) tensor.

    Example:
        `self.scale = torch.ones(3)` in `__init__`. The silent look-alike is
        `self.register_buffer("scale", torch.ones(3))`. Tensors built inside `forward`
        (`torch.tensor([...])`) become `_tensor_constantN` attributes instead (see TA501).

    Fix:
        Register it: `self.register_buffer("scale", torch.ones(3))` (or `nn.Parameter` if it is
        learned).

    Fact:
        `Module._save_to_state_dict` (torch/nn/modules/module.py) writes `self._parameters`
        and the persistent entries of `self._buffers` only; `Module._apply` (used by `.to()`)
        visits the same two dictionaries. `torch.fx.Tracer.create_arg` turns a tensor
        attribute into a `get_attr` node named by its qualified path (torch/fx/_symbolic_trace.py).
    """

    code = "TA201"
    severity = Severity.ERROR
    title = "Tensor attribute not captured by state_dict"

    def check(self, ctx: AuditContext) -> Iterable[Finding]:
        model = ctx.model
        known = {n for n, _ in model.named_parameters(remove_duplicate=False)}
        known |= {n for n, _ in model.named_buffers(remove_duplicate=False)}
        hits: dict[str, tuple[str | None, Location | None, torch.Tensor]] = {}
        if ctx.graph is not None and ctx.graph.gm is not None:
            for gnode in ctx.graph:
                name = gnode.target
                if gnode.op != "get_attr" or name in known or name.rsplit(".", 1)[-1].startswith(_GENERATED):
                    continue
                value = _resolve(model, name)
                if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter):
                    hits.setdefault(name, (gnode.name, gnode.location, value))
        else:
            for path, m in model.named_modules():
                for attr, value in vars(m).items():
                    if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter):
                        hits.setdefault(f"{path}.{attr}" if path else attr, (None, None, value))
        for name, (node_name, used_at, value) in sorted(hits.items()):
            owner, _, attr = name.rpartition(".")
            shape = "x".join(str(s) for s in value.shape) or "scalar"
            yield self.finding(
                f"{name} is a plain tensor attribute ({str(value.dtype).removeprefix('torch.')} {shape}) used by forward: "
                "state_dict() does not save it and .to()/.half() do not move or cast it",
                fix=f'register it: self.register_buffer("{attr}", ...) (or nn.Parameter if it is learned)',
                module=owner,
                node=node_name,
                location=astutil.attribute_site(ctx, owner, attr) or used_at,
                evidence={"attribute": name, "target": name},
            )
