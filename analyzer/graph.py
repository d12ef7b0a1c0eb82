"""The traced model as a ``networkx`` DiGraph of per-node facts.

Whichever tracer produced it (plain fx, transformers' fx tracer, ``torch.export``, or the
forward-hook fallback), the rest of torchaudit sees the same :class:`ModelGraph`: nodes in
execution order, each a :class:`GraphNode` with its op, target, owning module and source
location, and data-flow edges between them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

import networkx as nx
import torch

from torchaudit.report import Location

TORCH_DIR = os.path.dirname(torch.__file__)
# frames of tracing machinery, never the user's code
_SKIP_SUFFIXES = (os.path.join("transformers", "utils", "fx.py"),)
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')


@dataclass
class GraphNode:
    name: str
    op: str  # placeholder, get_attr, call_function, call_method, call_module, output (hooks: call_module)
    target: str  # qualified name of the callable or attribute
    module: str  # dotted path of the module whose forward made this node ("" = the root)
    module_type: str | None  # qualified class name of that module
    module_stack: tuple[str, ...] = ()  # enclosing module paths, outermost first
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    device: str | None = None
    location: Location | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def op_name(self) -> str:
        """A short op label for reports: ``linear``, ``softmax``, ``Dropout``..."""
        if self.op == "call_module":
            return (self.module_type or self.target).rsplit(".", 1)[-1]
        return self.target.rsplit(".", 1)[-1].split("::")[-1]


@dataclass
class ModelGraph:
    tracer: str  # "fx", "transformers-fx", "export", "hooks"
    graph: nx.DiGraph
    order: list[str]
    gm: torch.fx.GraphModule | None = None  # None for the hook fallback
    notes: list[str] = field(default_factory=list)  # why a fallback was used, what is lost
    traced_mode: str = "train"  # the model's mode at trace time (export bakes it in)

    def __iter__(self) -> Iterator[GraphNode]:
        for name in self.order:
            yield self.graph.nodes[name]["info"]

    def __len__(self) -> int:
        return len(self.order)

    def node(self, name: str) -> GraphNode:
        return self.graph.nodes[name]["info"]

    def fx_node(self, name: str) -> torch.fx.Node | None:
        """The fx node by name; the index is built once (a rule calling this per node stays linear)."""
        if self.gm is None:
            return None
        index = self.__dict__.get("_fx_index")
        if index is None or len(index) != len(self.gm.graph.nodes):
            index = self.__dict__["_fx_index"] = {n.name: n for n in self.gm.graph.nodes}
        return index.get(name)

    def nodes_in(self, module: str) -> list[GraphNode]:
        """Nodes made by ``module`` or any of its submodules."""
        prefix = module + "."
        return [n for n in self if n.module == module or n.module.startswith(prefix)]

    def predecessors(self, name: str) -> list[str]:
        return list(self.graph.predecessors(name))

    def successors(self, name: str) -> list[str]:
        return list(self.graph.successors(name))


def location_from_stack(stack_trace: str | None) -> Location | None:
    """The innermost frame of a recorded stack that is not inside torch itself."""
    if not stack_trace:
        return None
    frames = [m for m in _FRAME.finditer(stack_trace)]
    for m in reversed(frames):
        path = m.group("file")
        if path.startswith(TORCH_DIR) or path.startswith("<") or path.endswith(_SKIP_SUFFIXES):
            continue
        return Location(file=path, line=int(m.group("line")))
    return None


def tensor_facts(value: Any) -> tuple[tuple[int, ...] | None, str | None, str | None]:
    if isinstance(value, torch.Tensor):
        try:
            shape = tuple(int(s) for s in value.shape)
        except (TypeError, ValueError):  # symbolic sizes
            shape = None
        return shape, str(value.dtype).removeprefix("torch."), str(value.device)
    if isinstance(value, (tuple, list)) and value:
        return tensor_facts(value[0])
    return None, None, None


def qualified(target: Any) -> str:
    if isinstance(target, str):
        return target
    if isinstance(target, torch._ops.OpOverload):
        return f"aten.{target.__name__}" if target.namespace == "aten" else str(target)
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)
    if module.startswith("torch._C._nn") or module == "torch.nn.functional":
        module = "torch.nn.functional"
    elif module.startswith("torch._C") or module == "torch._tensor":
        module = "torch"
    return f"{module}.{name}" if module else name


def from_fx(gm: torch.fx.GraphModule, tracer: str, root: torch.nn.Module, notes: list[str] | None = None, traced_mode: str = "train") -> ModelGraph:
    """Build a :class:`ModelGraph` from an fx GraphModule with ``nn_module_stack`` metadata."""
    g: nx.DiGraph = nx.DiGraph()
    order: list[str] = []
    module_types = {name: f"{type(m).__module__}.{type(m).__qualname__}" for name, m in root.named_modules()}
    for n in gm.graph.nodes:
        stack_meta = n.meta.get("nn_module_stack") or {}
        paths = tuple(_clean_path(v[0]) for v in stack_meta.values())
        module = paths[-1] if paths else ""
        if n.op == "call_module":
            module = str(n.target)
            if not paths or paths[-1] != module:
                paths = paths + (module,)
        elif n.op == "get_attr":
            module = str(n.target).rpartition(".")[0]
        value = n.meta.get("val", n.meta.get("tensor_meta"))
        if "tensor_meta" in n.meta and not isinstance(value, torch.Tensor):
            tm = n.meta["tensor_meta"]
            shape, dtype, device = _from_tensor_meta(tm)
        else:
            shape, dtype, device = tensor_facts(value)
        info = GraphNode(
            name=n.name,
            op=n.op,
            target=qualified(n.target),
            module=module,
            module_type=module_types.get(module),
            module_stack=paths,
            shape=shape,
            dtype=dtype,
            device=device,
            location=location_from_stack(n.meta.get("stack_trace") or n.stack_trace),
        )
        g.add_node(n.name, info=info)
        order.append(n.name)
        for inp in n.all_input_nodes:
            g.add_edge(inp.name, n.name)
    return ModelGraph(tracer=tracer, graph=g, order=order, gm=gm, notes=list(notes or []), traced_mode=traced_mode)


def _from_tensor_meta(tm: Any) -> tuple[tuple[int, ...] | None, str | None, str | None]:
    if hasattr(tm, "shape"):
        return tuple(int(s) for s in tm.shape), str(tm.dtype).removeprefix("torch."), None
    if isinstance(tm, (tuple, list)) and tm:
        return _from_tensor_meta(tm[0])
    return None, None, None


def _clean_path(path: str) -> str:
    """``L['self'].encoder.layer[0]`` or ``L__self___encoder`` styles -> ``encoder.layer.0``."""
    path = str(path)
    path = re.sub(r"^L\['self'\]\.?", "", path)
    path = re.sub(r"\[(\d+)\]", r".\1", path)
    path = re.sub(r"\['([^']+)'\]", r".\1", path)
    return path.strip(".")
