"""The report's graph as a module tree a reviewer explores, the way Model Explorer shows one.

The traced graph (``Report.graph_outline``) becomes a tree: the inputs, the top-level modules,
the root's own ops and the output at the top; inside each module its child modules and its own
ops, down to the graph nodes. The page opens on the top level and expands a box on click
(``templates/report.js``), so a 5,000-node graph starts as a handful of boxes. A module's boxes
follow execution order, one box per module however often it runs. A container that holds
one module and nothing else (an encoder around its ModuleList) opens onto that module's
contents. A level with more than :data:`MAX_CHILDREN` boxes (the top level: more than
:data:`TOP_CHILDREN`) folds its runs of own ops into one box each (``ops``), then, if still too
many, consecutive boxes into ranges (``0 … 9``), each expandable like a module.

``torchaudit.reports.graph_marks`` colours the boxes; ``torchaudit.reports.graph_explorer``
hands the tree to the page.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Iterator, Mapping, Sequence

from torchaudit.report import OutlineNode, Report
from torchaudit.reports.wording import plural

MAX_CHILDREN = 40  # boxes one open box shows at most
TOP_CHILDREN = 12  # beyond this many at the top level, its runs of ops fold into one box each
NODE_KINDS = ("input", "op", "output")  # an item that is one graph node
_KIND = {"placeholder": "input", "output": "output"}


@dataclass(frozen=True)
class TreeItem:
    kind: str  # "input", "op", "output" (one graph node each), "module", "ops" (a run of a module's own ops), "range"
    name: str  # the node's name, the module's dotted path, or what a group stands for
    label: str  # what its box shows: the op, the module's last name, "12 ops", "0 … 9"
    type: str  # the module's class name (short); for a group, what it holds; "" for a node
    parent: int  # index of the enclosing item; -1 at the top level
    nodes: int  # graph nodes inside
    first: int  # execution index of its first node


@dataclass(frozen=True)
class ModuleTree:
    """Items ``0 .. total_nodes - 1`` are the graph nodes in execution order; modules and
    groups follow, each after its parent."""

    items: tuple[TreeItem, ...]
    inputs: tuple[tuple[int, ...], ...]  # per graph node: the nodes it reads

    @property
    def total_nodes(self) -> int:
        return len(self.inputs)

    @cached_property
    def children(self) -> dict[int, tuple[int, ...]]:
        """Each item's children in execution order; ``-1``: the top level."""
        out: dict[int, list[int]] = {}
        for i, item in enumerate(self.items):
            out.setdefault(item.parent, []).append(i)
        return {k: tuple(sorted(v, key=lambda i: self.items[i].first)) for k, v in out.items()}

    @property
    def top(self) -> tuple[int, ...]:
        return self.children.get(-1, ())

    def ancestors(self, i: int) -> Iterator[int]:
        """``i``'s enclosing items, innermost first."""
        i = self.items[i].parent
        while i >= 0:
            yield i
            i = self.items[i].parent

    @cached_property
    def index(self) -> dict[str, int]:
        """Graph node name -> its item."""
        return {self.items[i].name: i for i in range(self.total_nodes)}

    @cached_property
    def modules(self) -> dict[str, int]:
        """Module path -> its item."""
        return {item.name: i for i, item in enumerate(self.items) if item.kind == "module"}


def graph_view_of(report: Report) -> ModuleTree | None:
    """The report's module tree; ``None`` when the scan traced no graph."""
    return module_tree(report.graph_outline, report.module_types) if report.graph_outline else None


Entry = tuple[str, Any]  # ("node", index), ("module", path), ("ops", [entries]) or ("range", [entries])


def module_tree(outline: Sequence[OutlineNode], module_types: Mapping[str, str] | None = None) -> ModuleTree:
    """The module tree of ``outline``; ``module_types`` names modules that make no node themselves."""
    return _Builder(outline, module_types or {}).tree()


class _Builder:
    def __init__(self, outline: Sequence[OutlineNode], module_types: Mapping[str, str]) -> None:
        self.types = {path: t.rsplit(".", 1)[-1] for path, t in module_types.items()}
        for n in outline:
            if n.module and n.module_type:
                self.types.setdefault(n.module, n.module_type.rsplit(".", 1)[-1])
        names = {n.name: i for i, n in enumerate(outline)}
        self.inputs = tuple(tuple(names[s] for s in n.inputs if s in names) for n in outline)
        self.items = [TreeItem(_KIND.get(n.op, "op"), n.name, n.name if n.op == "placeholder" else n.op_name, "", -1, 1, i)
                      for i, n in enumerate(outline)]
        self.own: dict[str, list[int]] = {"": []}  # module path -> the nodes it makes itself
        for i, n in enumerate(outline):
            path = "" if n.op in _KIND else n.module
            self.own.setdefault(path, []).append(i)
            while path:
                path = path.rpartition(".")[0]
                self.own.setdefault(path, [])
        self.sub: dict[str, list[str]] = {}  # module path -> its child modules
        for path in self.own:
            if path:
                self.sub.setdefault(path.rpartition(".")[0], []).append(path)
        self.size: dict[str, int] = {}
        self.first: dict[str, int] = {}
        for path in sorted(self.own, key=lambda p: -(p.count(".") + 1) if p else 0):  # deepest first, the root last
            kids = self.sub.get(path, [])
            self.size[path] = len(self.own[path]) + sum(self.size[k] for k in kids)
            self.first[path] = min([*self.own[path], *(self.first[k] for k in kids)], default=len(outline))

    def tree(self) -> ModuleTree:
        self._build("", -1)
        return ModuleTree(tuple(self.items), self.inputs)

    def _build(self, path: str, parent: int) -> None:
        entries = self._entries(path)
        while len(entries) == 1 and entries[0][0] == "module":  # a container of one module (a ModuleList of one
            path = entries[0][1]  # layer, an encoder around its ModuleList) opens onto what that module holds
            entries = self._entries(path)
        # a crowded top level shows blocks: its runs of glue ops (shapes, masks) fold first
        top = path == "" and len(entries) > TOP_CHILDREN and any(e[0] == "module" for e in entries)
        for entry in _fold(entries, self._first, lambda e: e[0] == "node" and self.items[e[1]].kind == "op",
                           lambda e: e[0] == "node" and self.items[e[1]].kind != "op", top):
            self._place(entry, parent, path)

    def _entries(self, path: str) -> list[Entry]:
        entries: list[Entry] = [("node", i) for i in self.own[path]] + [("module", m) for m in self.sub.get(path, [])]
        return sorted(entries, key=self._first)

    def _place(self, entry: Entry, parent: int, path: str) -> None:
        kind, value = entry
        if kind == "node":
            node = self.items[value]
            self.items[value] = TreeItem(node.kind, node.name, node.label, node.type, parent, 1, value)
        elif kind == "module":
            self._build(value, self._add("module", value, _short(value), self.types.get(value, ""), parent, entry))
        else:
            index = self._add(kind, *self._describe(kind, value, path), parent, entry)
            for member in value:
                self._place(member, index, path)

    def _add(self, kind: str, name: str, label: str, type_: str, parent: int, entry: Entry) -> int:
        self.items.append(TreeItem(kind, name, label, type_, parent, self._nodes(entry), self._first(entry)))
        return len(self.items) - 1

    def _describe(self, kind: str, members: list[Entry], path: str) -> tuple[str, str, str]:
        where = path or "the root"
        if kind == "ops":
            ops = Counter(self.items[i].label for _, i in self._leaves(members))
            count = sum(ops.values())
            return (f"{count} own ops of {where}", f"{count} ops",
                    ", ".join(op for op, _ in ops.most_common(3)) + (", \u2026" if len(ops) > 3 else ""))
        first, last = self._end(members[0], False), self._end(members[-1], True)
        counts = Counter("module" if e[0] == "module" else "op" for e in self._leaves(members))
        held = ", ".join(plural(counts[k], k) for k in ("module", "op") if counts[k])
        return f"{first} \u2026 {last} in {where}", f"{first} \u2026 {last}", held

    def _leaves(self, members: list[Entry]) -> Iterator[Entry]:
        for e in members:
            if e[0] in ("node", "module"):
                yield e
            else:
                yield from self._leaves(e[1])

    def _end(self, entry: Entry, last: bool) -> str:
        """How a range names the entry it starts (or, ``last``, ends) with: a node by its name."""
        kind, value = entry
        if kind == "node":
            return self.items[value].name
        if kind == "module":
            return _short(value)
        if kind == "range":
            return self._end(value[-1] if last else value[0], last)
        return f"{self._nodes(entry)} ops"

    def _first(self, entry: Entry) -> int:
        kind, value = entry
        if kind == "node":
            return int(value)
        if kind == "module":
            return self.first[value]
        return self._first(value[0])

    def _nodes(self, entry: Entry) -> int:
        kind, value = entry
        if kind == "node":
            return 1
        if kind == "module":
            return self.size[value]
        return sum(self._nodes(e) for e in value)


def _fold(entries: list[Entry], first: Callable[[Entry], int], is_op: Callable[[Entry], bool],
          fixed: Callable[[Entry], bool], always: bool) -> list[Entry]:
    """At most :data:`MAX_CHILDREN` entries: runs of two or more ops become one ``ops`` entry
    (``always``: even when there are few), then consecutive entries (the inputs and the output
    stay apart) become ranges."""
    if len(entries) <= MAX_CHILDREN and not always:
        return entries
    folded: list[Entry] = []
    run: list[Entry] = []
    for e in [*entries, ("end", None)]:
        if e[0] != "end" and is_op(e):
            run.append(e)
            continue
        folded += [("ops", _ranges(run))] if len(run) > 1 else run
        run = []
        if e[0] != "end":
            folded.append(e)
    if len(folded) <= MAX_CHILDREN:
        return folded
    kept = [e for e in folded if fixed(e)]
    return sorted(kept + _ranges([e for e in folded if not fixed(e)]), key=first)


def _ranges(entries: list[Entry]) -> list[Entry]:
    if len(entries) <= MAX_CHILDREN:
        return entries
    size = max(math.ceil(len(entries) / MAX_CHILDREN), math.ceil(math.sqrt(len(entries))))
    return [("range", _ranges(entries[i : i + size])) for i in range(0, len(entries), size)]


def _short(path: str) -> str:
    """A module's box label: its last name, with its parent's for a numbered one (``layer.0``)."""
    parts = path.split(".")
    return ".".join(parts[-2:]) if parts[-1].isdigit() and len(parts) > 1 else parts[-1]
