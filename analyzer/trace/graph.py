"""The traced model as a ``networkx`` DiGraph of per-node facts.

Whichever tracer produced it (plain fx, transformers' fx tracer, ``torch.export``, or the
forward-hook fallback), the rest of torchaudit sees the same :class:`ModelGraph`: nodes in
execution order, each a :class:`GraphNode` with its op, target, owning module and source
location, and data-flow edges between them.
"""

from __future__ import annotations

import functools
from functools import cached_property
import inspect
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import networkx as nx
import torch
from torch.fx.node import Target
from torch.fx.passes.shape_prop import TensorMetadata

from torchaudit.analyzer.values import tensor_leaves
from torchaudit.report import Location, OutlineNode

TORCH_DIR = os.path.dirname(torch.__file__)
# frames of tracing machinery, never the user's code
_SKIP_SUFFIXES = (os.path.join("transformers", "utils", "fx.py"),)
# torch.ops namespaces whose OpOverloads ``qualified`` spells ``<namespace>.<op>.<overload>``
OPS_NAMESPACES = ("aten.", "prims.")
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
    location: Location | None = None  # the user line that made it; inputs/output: the def forward line;
    # lifted parameters: the first line using them; else the nearest non-torch forward's def line
    meta: dict[str, bool] = field(default_factory=dict)  # flags: "pinned" (fixed by concrete_args)

    @property
    def op_name(self) -> str:
        """A short op label for reports: ``linear``, ``softmax``, ``Dropout``; an operator of an
        export graph without its overload: ``aten.empty`` for ``aten.empty.memory_format``."""
        if self.op == "call_module":
            return (self.module_type or self.target).rsplit(".", 1)[-1]
        if self.op == "call_function" and self.target.startswith(OPS_NAMESPACES) and self.target.count(".") == 2:
            return self.target.rsplit(".", 1)[0]
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

    @cached_property
    def _fx_nodes(self) -> dict[str, torch.fx.Node]:
        return {n.name: n for n in self.gm.graph.nodes} if self.gm is not None else {}

    def fx_node(self, name: str) -> torch.fx.Node | None:
        """The fx node behind a graph node (None for the hook fallback)."""
        return self._fx_nodes.get(name)

    def outline(self) -> tuple[OutlineNode, ...]:
        """The graph as reports draw it (no tensors, no fx objects)."""
        return tuple(OutlineNode(n.name, n.op, n.op_name, n.module, n.module_type, tuple(self.graph.predecessors(n.name)), n.dtype)
                     for n in self)

    def nodes_in(self, module: str) -> list[GraphNode]:
        """Nodes made by ``module`` or any of its submodules."""
        prefix = module + "."
        return [n for n in self if n.module == module or n.module.startswith(prefix)]

    def predecessors(self, name: str) -> list[str]:
        return list(self.graph.predecessors(name))

    def successors(self, name: str) -> list[str]:
        return list(self.graph.successors(name))


def type_name(m: object) -> str:
    """The qualified class name of a module: ``torch.nn.modules.linear.Linear``."""
    return f"{type(m).__module__}.{type(m).__qualname__}"


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


def tensor_facts(value: object) -> tuple[tuple[int, ...] | None, str | None, str | None]:
    """Shape, dtype and device of a value's first tensor (of a tuple, dict or model output too)."""
    tensor = value if isinstance(value, torch.Tensor) else next(iter(tensor_leaves(value)), None)
    if tensor is None:
        return None, None, None
    try:
        shape: tuple[int, ...] | None = tuple(int(s) for s in tensor.shape)
    except (TypeError, ValueError):  # symbolic sizes
        shape = None
    return shape, str(tensor.dtype).removeprefix("torch."), str(tensor.device)


def fx_op_name(target: Target) -> str:
    """The bare name of an fx node's target, as the engine matches ops: ``view`` (a method),
    ``getattr``, ``sym_size`` (``aten.sym_size.int``), ``_vmap_increment_nesting``."""
    if isinstance(target, str):
        return target
    name = getattr(target, "__name__", "") or str(target)
    return name.split(".")[0] if "." in name and not name.startswith("aten") else name.split(".")[-2 if name.count(".") >= 2 else -1]


def qualified(target: Target) -> str:
    """``torch.sigmoid``, ``torch.nn.functional.gelu``, ``_operator.add``, ``aten.linear.default``."""
    if isinstance(target, str):
        return target
    if isinstance(target, torch._ops.OpOverload):
        return f"aten.{target.__name__}" if target.namespace == "aten" else str(target)
    name = getattr(target, "__name__", None)
    import torch.nn.functional as F

    for prefix, namespace in (("torch.nn.functional", F), ("torch", torch)):
        if name and getattr(namespace, name, None) is target:
            return f"{prefix}.{name}"  # the public name users write (not torch._C._nn.gelu)
    module = getattr(target, "__module__", None) or ""
    qual = getattr(target, "__qualname__", None) or name or repr(target)
    if module.startswith("torch._C._nn") or module == "torch.nn.functional":
        module = "torch.nn.functional"
    elif module.startswith("torch._C") or module == "torch._tensor":
        module = "torch"
    return f"{module}.{qual}" if module else qual


def from_fx(gm: torch.fx.GraphModule, tracer: str, root: torch.nn.Module, notes: list[str] | None = None, traced_mode: str = "train") -> ModelGraph:
    """Build a :class:`ModelGraph` from an fx GraphModule with ``nn_module_stack`` metadata."""
    g: nx.DiGraph = nx.DiGraph()
    order: list[str] = []
    modules = dict(root.named_modules())
    module_types = {name: type_name(m) for name, m in modules.items()}
    for n in gm.graph.nodes:
        stack_meta = n.meta.get("nn_module_stack") or {}
        paths = tuple(p for p in (_clean_path(v[0]) for v in stack_meta.values()) if p)
        module = paths[-1] if paths else ""
        if n.op == "call_module":
            module = str(n.target)
            if not paths or paths[-1] != module:
                paths = paths + (module,)
        elif n.op == "get_attr" and (not paths or _owner(str(n.target), module_types)):
            # a parameter or buffer belongs to the module that owns it, wherever it is read (export
            # lifts them to the top of the graph; T5's DenseReluDense reads self.wo.weight.dtype)
            module = _owner(str(n.target), module_types)
            paths = _stack(module) if module else ()
        shape, dtype, device = _facts(n)
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
            location=location_from_stack(n.meta.get("stack_trace") or n.stack_trace)
            or (None if n.op == "get_attr" else _forward_location(module, modules)),
            meta={"pinned": True} if n.meta.get("torchaudit_pinned") else {},
        )
        g.add_node(n.name, info=info)
        order.append(n.name)
        for inp in n.all_input_nodes:
            g.add_edge(inp.name, n.name)
    for n in gm.graph.nodes:  # a lifted parameter without a stack: the line that first uses it
        info = g.nodes[n.name]["info"]
        if info.location is None and n.op == "get_attr":
            info.location = next(
                (g.nodes[u.name]["info"].location for u in n.users if g.nodes[u.name]["info"].location), None
            ) or _forward_location(info.module, modules)
    return ModelGraph(tracer=tracer, graph=g, order=order, gm=gm, notes=list(notes or []), traced_mode=traced_mode)


def _forward_location(path: str, modules: dict[str, torch.nn.Module]) -> Location | None:
    """Where a node's stack was not recorded (inputs, the output, export's lifted parameters and
    higher-order ops such as ``wrap_with_autocast``): the ``def forward`` line of its module
    (the root's for inputs and output), when that is outside torch."""
    while True:  # the innermost enclosing module whose forward is not torch's own
        module = modules.get(path)
        found = forward_def_location(module) if module is not None else None
        if found is not None or not path:
            return found
        path = path.rpartition(".")[0]


def forward_def_location(module: torch.nn.Module) -> Location | None:
    """The ``def forward`` line of a module's class (decorators unwrapped), outside torch."""
    return _def_location(inspect.unwrap(type(module).forward))


@functools.lru_cache(maxsize=None)
def _def_location(fn: Callable[..., Any]) -> Location | None:
    try:
        file = inspect.getsourcefile(fn)
        line = inspect.getsourcelines(fn)[1]
    except (TypeError, OSError):
        return None
    if not file or file.startswith(TORCH_DIR):
        return None
    return Location(file=file, line=line)


def _facts(n: torch.fx.Node) -> tuple[tuple[int, ...] | None, str | None, str | None]:
    """Output shape, dtype and device of a node: from our own propagation, export's fake
    values, or fx's ``tensor_meta`` (which has no device)."""
    if "torchaudit_facts" in n.meta:
        return n.meta["torchaudit_facts"]
    value = n.meta.get("val")
    if value is not None:
        return tensor_facts(value)
    if "tensor_meta" in n.meta:
        return _from_tensor_meta(n.meta["tensor_meta"])
    return None, None, None


def _owner(target: str, module_types: dict[str, str]) -> str:
    """The module that owns an attribute path (``a.b.weight`` -> ``a.b``)."""
    owner = target.rpartition(".")[0]
    while owner and owner not in module_types:
        owner = owner.rpartition(".")[0]
    return owner


def _stack(path: str) -> tuple[str, ...]:
    """``a.b.c`` -> ``("a", "a.b", "a.b.c")``: the enclosing module paths, outermost first."""
    parts = path.split(".")
    return tuple(".".join(parts[: i + 1]) for i in range(len(parts)))


def _from_tensor_meta(tm: object) -> tuple[tuple[int, ...] | None, str | None, str | None]:
    """Facts of fx's ``tensor_meta``: a TensorMetadata, or containers of them for several outputs."""
    if isinstance(tm, TensorMetadata):
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
