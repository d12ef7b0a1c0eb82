"""Collapse a traced graph by module into a :class:`GraphView` small enough to draw.

A 5,000-node graph drawn node by node is unreadable and slow to open. The view starts with
one box per top-level module and splits the largest box into its child modules for as long
as the number of boxes stays under the cap, so a small model is drawn module by module and a
large one stays a readable outline. Edges between boxes count the data-flow edges they stand
for.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from torchaudit.analyzer.graph import GraphNode, ModelGraph
from torchaudit.report import GraphGroup, GraphView

DEFAULT_CAP = 60
_SPECIAL = {"placeholder": "inputs", "output": "output"}


def collapse_graph(graph: ModelGraph, cap: int = DEFAULT_CAP) -> GraphView:
    """Group ``graph``'s nodes by module prefix, splitting largest-first while under ``cap``."""
    nodes = list(graph)
    modules = sorted({n.module for n in nodes if n.op not in _SPECIAL and n.module})
    groups: set[str] = {m.split(".")[0] for m in modules}
    splittable = set(groups)
    collapsed = False
    while splittable:
        sizes = Counter(_group_of(n, groups) for n in nodes)
        prefix = max(splittable, key=lambda g: (sizes.get(("module", g), 0), g))
        splittable.discard(prefix)
        children = _children(prefix, modules)
        if not children:
            continue
        if len({_group_of(n, groups | children) for n in nodes}) > cap:
            collapsed = True
            continue
        groups |= children
        splittable |= children
    return _build(graph, nodes, groups, collapsed)


def _children(prefix: str, modules: list[str]) -> set[str]:
    depth = prefix.count(".") + 1
    start = prefix + "."
    return {".".join(m.split(".")[: depth + 1]) for m in modules if m.startswith(start)}


def _group_of(node: GraphNode, groups: set[str]) -> tuple[str, str]:
    if node.op in _SPECIAL:
        return (_SPECIAL[node.op], "")
    path = node.module
    while path:
        if path in groups:
            return ("module", path)
        path = path.rpartition(".")[0]
    return ("root", "")


def _build(graph: ModelGraph, nodes: list[GraphNode], groups: set[str], collapsed: bool) -> GraphView:
    members: dict[tuple[str, str], list[tuple[int, GraphNode]]] = defaultdict(list)
    key_of: dict[str, tuple[str, str]] = {}
    for index, node in enumerate(nodes):
        key = _group_of(node, groups)
        members[key].append((index, node))
        key_of[node.name] = key
    ids = {key: f"g{i}" for i, key in enumerate(sorted(members, key=lambda k: members[k][0][0]))}
    out: list[GraphGroup] = []
    for key, items in sorted(members.items(), key=lambda kv: kv[1][0][0]):
        kind, module = key
        ops = Counter(n.op_name for _, n in items if n.op not in _SPECIAL)
        types = {n.module_type for _, n in items if n.module == module and n.module_type}
        out.append(
            GraphGroup(
                id=ids[key],
                module=module,
                label=module if kind == "module" else {"root": "(root)", "inputs": "(inputs)", "output": "(output)"}[kind],
                kind=kind,
                module_type=sorted(types)[0].rsplit(".", 1)[-1] if kind == "module" and len(types) == 1 else None,
                nodes=len(items),
                first=items[0][0],
                ops=tuple(op for op, _ in ops.most_common(3)),
            )
        )
    counts: Counter[tuple[str, str]] = Counter()
    for src, dst in graph.graph.edges:
        a, b = key_of.get(src), key_of.get(dst)
        if a is not None and b is not None and a != b:
            counts[(ids[a], ids[b])] += 1
    edges = tuple(sorted((a, b, n) for (a, b), n in counts.items()))
    return GraphView(groups=tuple(out), edges=edges, total_nodes=len(nodes), collapsed=collapsed)
