"""One side of a lockstep run: a traced graph bound to one model instance and its inputs.

:class:`FxSide` runs an fx ``GraphModule`` node by node through ``torch.fx.Interpreter``'s
per-op methods (``call_module``, ``call_function``, ...), keeping its own environment by node
name so the engine can free each value after its last user. :class:`PerSampleSide` runs one
graph per sample of a batch (the reference of the ``batch`` comparison) and joins the samples'
values along their batch dimension when asked.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol

import torch
import torch.fx
from torch.fx.graph import inplace_methods
from torch.fx.node import map_arg

from torchaudit.analyzer.compare.streaming import SideWeights, weight_targets
from torchaudit.analyzer.trace.graph import ModelGraph, fx_op_name, location_from_stack
from torchaudit.analyzer.load.inputs import ExampleInputs
from torchaudit.analyzer.values import zip_map
from torchaudit.errors import exception_line
from torchaudit.report import Location


class RngStream:
    """A private copy of the global RNG state, so each side draws its own random numbers."""

    def __init__(self, seed: int, device: str = "cpu") -> None:
        self.cuda = device.startswith("cuda")
        with _saved_rng(self.cuda):
            torch.manual_seed(seed)
            self.state = self._get()

    def _get(self) -> tuple[torch.Tensor, ...]:
        """The CPU generator's state, and the current CUDA device's on a CUDA side."""
        cpu = torch.random.get_rng_state()
        return (cpu, torch.cuda.get_rng_state()) if self.cuda else (cpu,)

    def _set(self, state: tuple[torch.Tensor, ...]) -> None:
        torch.random.set_rng_state(state[0])
        if self.cuda:
            torch.cuda.set_rng_state(state[1])

    @contextlib.contextmanager
    def active(self, advance: bool = True) -> Iterator[None]:
        """Draw from this stream; ``advance=False`` leaves the stream where it was (the shadow)."""
        self._set(self.state)
        try:
            yield
        finally:
            if advance:
                self.state = self._get()


@contextlib.contextmanager
def _saved_rng(cuda: bool) -> Iterator[None]:
    cpu = torch.random.get_rng_state()
    dev = torch.cuda.get_rng_state() if cuda else None
    try:
        yield
    finally:
        torch.random.set_rng_state(cpu)
        if dev is not None:
            torch.cuda.set_rng_state(dev)


def placeholder_values(gm: torch.fx.GraphModule, inputs: ExampleInputs) -> dict[str, Any]:
    """Values for the graph's placeholders, from the example inputs."""
    import inspect

    phs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    spec = getattr(gm, "_in_spec", None)
    if spec is not None:  # torch.export: placeholders are the flattened (args, kwargs)
        from torch.utils._pytree import tree_flatten

        flat = tree_flatten((tuple(inputs.args), dict(inputs.kwargs)))[0]
        if len(flat) == len(phs):
            return {n.name: v for n, v in zip(phs, flat)}
    root = getattr(gm, "_ta_root_forward", None)
    bound: dict[str, Any] = {}
    try:
        sig = inspect.signature(root) if root is not None else None
        if sig is not None:
            bound = dict(sig.bind(*inputs.args, **inputs.kwargs).arguments)
    except TypeError:
        bound = {}
    values: dict[str, Any] = {}
    positional = list(inputs.args)
    for i, n in enumerate(phs):
        name = str(n.target).lstrip("*")
        if name in bound:
            values[n.name] = bound[name]
        elif name in inputs.kwargs:
            values[n.name] = inputs.kwargs[name]
        elif not bound and i < len(positional):
            values[n.name] = positional[i]
        else:
            values[n.name] = n.args[0] if n.args else None
    return values


def _mutates(n: torch.fx.Node, gm: torch.fx.GraphModule) -> bool:
    """Could this node write into its inputs? (in-place methods, ``inplace=True``, ``aten.*_``)"""
    if n.kwargs.get("inplace"):
        return True
    if n.op == "call_method":
        return str(n.target).endswith("_") and not str(n.target).endswith("__")
    if n.op == "call_module":
        return bool(getattr(gm.get_submodule(str(n.target)), "inplace", False))
    if n.op == "call_function":
        name = getattr(n.target, "__name__", "")
        if getattr(n.target, "__module__", None) in ("_operator", "operator") and name in inplace_methods:
            return True  # x[i] = v, x += y: torch/fx/graph.py's table of in-place operators
        schema = getattr(n.target, "_schema", None)
        if schema is not None:
            return bool(schema.is_mutable)
        name = getattr(n.target, "__name__", "")
        return name.endswith("_") and not name.endswith("__")
    return False


class Side(Protocol):
    """What the lockstep engine needs of each side: nodes by name in execution order, run one
    at a time, their values read and freed. :class:`FxSide` and :class:`PerSampleSide` are sides."""

    order: list[str]  # node names in execution order

    def __contains__(self, name: str) -> bool: ...

    def input_names(self, name: str) -> list[str]:
        """The nodes whose values node ``name`` reads."""
        ...

    def mutates(self, name: str) -> bool:
        """Whether node ``name`` may write into its inputs (an in-place op)."""
        ...

    def run(self, name: str) -> None: ...

    def run_region(self, names: list[str]) -> None:
        """Run ``names`` one after the other with nothing else in between (a vmap region)."""
        ...

    def value(self, name: str, like: Any = None) -> Any:
        """Node ``name``'s value (``like``: the other side's value, for a side that must shape its own)."""
        ...

    def free(self, name: str) -> None: ...


class Candidate(Side, Protocol):
    """The candidate side also runs its ops on the reference's inputs (the shadow), and its
    nodes name the findings."""

    @property
    def nodes(self) -> Mapping[str, torch.fx.Node]:
        """The graph's nodes by name."""
        ...

    env: dict[str, Any]  # values alive now, by node name
    inputs: dict[str, Any]  # placeholder values
    rng: RngStream

    def args_from(self, name: str, lookup: Callable[[str], Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Node ``name``'s arguments, each input node's value taken from ``lookup``."""
        ...

    def execute(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Node ``name``'s op applied to the given arguments."""
        ...

    def parameters_of(self, name: str) -> list[torch.Tensor]:
        """The parameters of the module a ``call_module`` node calls (none for other nodes)."""
        ...


class FxSide:
    """A graph bound to one model instance, run one node at a time."""

    def __init__(self, graph: ModelGraph, inputs: ExampleInputs, rng: RngStream,
                 model_forward: Callable[..., Any] | None = None, alias: Mapping[str, str] | None = None,
                 weights: SideWeights | None = None) -> None:
        """``alias`` renames nodes (``align``: the other side's name for the same op);
        ``weights``: read every weight from there when a node needs it (``--stream-weights``)."""
        assert graph.gm is not None
        self.gm = graph.gm
        self.graph = graph
        self.interp = torch.fx.Interpreter(self.gm, garbage_collect_values=False)
        self.alias = dict(alias or {})
        self.nodes: dict[str, torch.fx.Node] = {self.alias.get(n.name, n.name): n for n in self.gm.graph.nodes}
        self.order = [self._name(n) for n in at_first_use(list(self.gm.graph.nodes))]
        self.weights = weights
        self.streamed = weight_targets(self.gm) if weights is not None else set()
        self.env: dict[str, Any] = {}
        self.rng = rng
        if model_forward is not None:  # placeholder_values binds inputs by forward's signature
            self.gm._ta_root_forward = model_forward  # type: ignore[assignment]  # Module.__setattr__ is typed for tensors and modules; a plain callable lands in __dict__
        self.inputs = placeholder_values(self.gm, inputs)

    def __contains__(self, name: str) -> bool:
        return name in self.nodes

    def _name(self, n: torch.fx.Node) -> str:
        return self.alias.get(n.name, n.name)

    def input_names(self, name: str) -> list[str]:
        return [self._name(m) for m in self.nodes[name].all_input_nodes]

    def mutates(self, name: str) -> bool:
        return _mutates(self.nodes[name], self.gm)

    def execute(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Node ``name``'s op applied to the given arguments (its own or the shadow's)."""
        n = self.nodes[name]
        if n.op == "placeholder":
            return self.inputs[n.name]
        if n.op == "output":
            return args[0]
        if self.weights is not None:
            if n.op == "get_attr" and n.target in self.streamed:
                return self.weights.read(str(n.target))
            if n.op == "call_module":
                with self.weights.materialised(self.gm.get_submodule(str(n.target)), str(n.target)):
                    return self.interp.call_module(n.target, args, kwargs)
        return getattr(self.interp, n.op)(n.target, args, kwargs)

    def own_args(self, name: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        n = self.nodes[name]
        return map_arg(n.args, lambda m: self.env[self._name(m)]), map_arg(n.kwargs, lambda m: self.env[self._name(m)])

    def args_from(self, name: str, lookup: Callable[[str], Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        n = self.nodes[name]
        return map_arg(n.args, lambda m: lookup(self._name(m))), map_arg(n.kwargs, lambda m: lookup(self._name(m)))

    def run(self, name: str) -> None:
        args, kwargs = self.own_args(name)
        try:
            with self.rng.active():
                self.env[name] = self.execute(name, args, kwargs)
        except Exception as exc:
            # the model's op failed on its own side's values: the model's line, not torchaudit's
            # (compare.stage.model_frame reads it when no frame of the model's code is in the traceback)
            exc.torchaudit_location = self.location_of(name)  # type: ignore[attr-defined]
            raise

    def location_of(self, name: str) -> Location | None:
        n = self.nodes[name]
        if n.name in self.graph.graph:
            loc = self.graph.node(n.name).location
            if loc is not None:
                return loc
        return location_from_stack(n.meta.get("stack_trace") or n.stack_trace)

    def run_region(self, names: list[str]) -> None:
        for name in names:
            self.run(name)

    def value(self, name: str, like: Any = None) -> Any:
        return self.env.get(name)

    def free(self, name: str) -> None:
        self.env.pop(name, None)

    def parameters_of(self, name: str) -> list[torch.Tensor]:
        n = self.nodes[name]
        if n.op != "call_module":
            return []
        return list(self.gm.get_submodule(str(n.target)).parameters(recurse=False))


def at_first_use(nodes: list[torch.fx.Node]) -> list[torch.fx.Node]:
    """The graph's nodes in execution order, each ``get_attr`` moved to just before its first
    user. ``torch.export`` graphs fetch every weight first; run in that order, every weight
    would be alive from the start. A ``get_attr`` reads no other node, so this order runs
    the same ops on the same values, and the first node to diverge is the first in data flow.
    A user inside a vmap region (:func:`vmap_region_starts`), which runs whole, gets it before
    the region starts, so the region stays what it was."""
    by_name = {n.name: n for n in nodes}
    start = vmap_region_starts(list(by_name), by_name)
    before: dict[str, list[torch.fx.Node]] = {}
    placed: set[torch.fx.Node] = set()
    for n in nodes:
        for m in n.all_input_nodes:
            if m.op == "get_attr" and m not in placed:
                placed.add(m)
                before.setdefault(start.get(n.name, n.name), []).append(m)
    out: list[torch.fx.Node] = []
    for n in nodes:
        if n in placed:
            continue
        out.extend(before.get(n.name, ()))
        out.append(n)
    return out


def vmap_region_starts(order: list[str], nodes: Mapping[str, torch.fx.Node]) -> dict[str, str]:
    """Each node between functorch's ``_vmap_increment_nesting`` and its matching
    ``_vmap_decrement_nesting`` (both included), mapped to the region's first node."""
    out: dict[str, str] = {}
    first: str | None = None
    depth = 0
    for name in order:
        target = fx_op_name(nodes[name].target) if name in nodes else ""
        if target.endswith("_vmap_increment_nesting"):
            if depth == 0:
                first = name
            depth += 1
        if first is not None:
            out[name] = first
        if target.endswith("_vmap_decrement_nesting") and depth:
            depth -= 1
            if depth == 0:
                first = None
    return out


class NotRunnable:
    """A per-sample value that could not be computed: the op needs more than one sample."""

    def __init__(self, reason: str, origin: str) -> None:
        self.reason = reason
        self.origin = origin  # the node that raised ("" = inherited from an input)


class PerSampleSide:
    """The reference of ``batch``: one graph run per sample; values joined on demand."""

    def __init__(self, graph: ModelGraph, samples: list[ExampleInputs], rng: RngStream,
                 model_forward: Callable[..., Any] | None = None, weights: SideWeights | None = None) -> None:
        self.sides = [FxSide(graph, s, rng, model_forward, weights=weights) for s in samples]
        self.nodes = self.sides[0].nodes
        self.order = self.sides[0].order
        self.graph = graph
        self.data = data_nodes(self.nodes.values())

    def __contains__(self, name: str) -> bool:
        return name in self.nodes

    def input_names(self, name: str) -> list[str]:
        return self.sides[0].input_names(name)

    def mutates(self, name: str) -> bool:
        return self.sides[0].mutates(name)

    def run(self, name: str) -> None:
        first = self.sides[0]
        upstream = [first.env.get(m) for m in first.input_names(name)]
        if any(isinstance(v, NotRunnable) for v in upstream):
            for s in self.sides:
                s.env[name] = NotRunnable("an input could not be computed for a sample alone", origin="")
            return
        try:
            for s in self.sides:
                s.run(name)
        except Exception as exc:  # noqa: BLE001 - an op that cannot see one sample alone
            for s in self.sides:
                s.env[name] = NotRunnable(exception_line(exc), origin=name)

    def run_region(self, names: list[str]) -> None:
        """Each sample runs the whole region before the next sample starts it: a vmap region
        pushes and pops functorch's global vmap level, so two samples must not interleave."""
        first = self.sides[0]
        region = set(names)
        upstream = [first.env.get(m) for n in names for m in first.input_names(n) if m not in region]
        failed: NotRunnable | None = None
        if any(isinstance(v, NotRunnable) for v in upstream):
            failed = NotRunnable("an input could not be computed for a sample alone", origin="")
        else:
            try:
                for s in self.sides:
                    s.run_region(names)
            except Exception as exc:  # noqa: BLE001 - a region that cannot see one sample alone
                failed = NotRunnable(exception_line(exc), origin=names[-1])
        if failed is not None:
            for s in self.sides:
                for n in names:
                    s.env[n] = failed

    def value(self, name: str, like: Any = None) -> Any:
        """The samples' values joined into a batch; for a node computed from shapes and
        constants alone (``arange`` over the batch size, a mask's batch index), the batch's own
        value ``like``: it holds no sample's data, and one sample's copy is the wrong size."""
        if like is not None and name not in self.data:
            return like
        parts = [s.env.get(name) for s in self.sides]
        if parts and isinstance(parts[0], NotRunnable):
            return parts[0]
        return join_samples(parts, like)

    def free(self, name: str) -> None:
        for s in self.sides:
            s.free(name)


_SHAPE_QUERIES = frozenset({"size", "dim", "numel", "sym_size", "sym_numel", "sym_stride", "stride"})
_SHAPE_ATTRIBUTES = frozenset({"shape", "ndim", "dtype", "device", "is_cuda", "layout"})


def data_nodes(nodes: Iterable[torch.fx.Node]) -> set[str]:
    """The nodes whose values derive from the inputs' data (through any op but a shape query:
    ``x.size(0)``, ``x.shape``, ``aten.sym_size``), in a graph's node order."""
    data: set[str] = set()
    for n in nodes:
        if n.op == "placeholder":
            data.add(n.name)
            continue
        op = fx_op_name(n.target)
        if op in _SHAPE_QUERIES or (op == "getattr" and len(n.args) > 1 and n.args[1] in _SHAPE_ATTRIBUTES):
            continue
        if any(m.name in data for m in n.all_input_nodes):
            data.add(n.name)
    return data


def join_samples(parts: list[Any], like: Any) -> Any:
    """Concatenate per-sample values along the dim where the batched value ``like`` is
    ``len(parts)`` times larger, leaf by leaf; a plain leaf (``None``, a string, a number) the
    same in every sample and the batch stays. ``None`` when they do not line up (structures,
    sizes, shapes, other leaves)."""
    failed = False

    def join(batched: Any, *samples: Any) -> Any:
        nonlocal failed
        if isinstance(batched, torch.Tensor):
            out = _join_tensors(list(samples), batched)
            failed = failed or out is None
            return out
        same = isinstance(batched, _PLAIN) and all(type(s) is type(batched) and s == batched for s in samples)
        failed = failed or not same
        return batched

    joined = zip_map(join, like, *parts)
    return None if failed else joined


_PLAIN = (type(None), str, bool, int, float)


def _join_tensors(parts: list[Any], like: torch.Tensor) -> torch.Tensor | None:
    if not all(isinstance(p, torch.Tensor) and p.dim() == like.dim() for p in parts):
        return None
    shapes = [p.shape for p in parts]
    if any(s != shapes[0] for s in shapes):
        return None
    for d in range(like.dim()):
        if like.shape[d] == len(parts) * shapes[0][d] and all(
            like.shape[e] == shapes[0][e] for e in range(like.dim()) if e != d
        ):
            return torch.cat(parts, dim=d)
    return None
