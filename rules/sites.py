"""Graph evidence shared by every family: the fx node behind a graph node, and sites that
merge a graph node with the source line behind it (one finding per line, every module that
runs it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from torchaudit.analyzer.paths import resolved
from torchaudit.report import Location

if TYPE_CHECKING:
    import torch.fx

    from torchaudit.analyzer.context import AuditContext


def fx_node(ctx: AuditContext, name: str) -> torch.fx.Node | None:
    """The torch.fx node behind a graph node (``None`` without an fx graph)."""
    return ctx.graph.fx_node(name) if ctx.graph is not None else None


def in_sources(ctx: AuditContext, loc: Location | None) -> bool:
    """Whether a location lies in one of the parsed user source files."""
    if loc is None or loc.line is None:
        return False
    return ctx.source_for(loc.file) is not None


@dataclass
class Site:
    """One place in the user's code where a rule fires, with every module that runs it."""

    location: Location | None
    modules: list[str] = field(default_factory=list)
    node: str | None = None
    data: dict[str, str] = field(default_factory=dict)  # what the finding will say (op, target, ...)


class Sites:
    """Graph and source evidence for one rule, merged by source line (graph first)."""

    def __init__(self) -> None:
        self._sites: dict[tuple[str, int | str | None], Site] = {}

    @staticmethod
    def _key(loc: Location | None, node: str | None) -> tuple[str, int | str | None]:
        if loc is not None and loc.line is not None:
            return (str(resolved(Path(loc.file))), loc.line)
        return ("node", node)

    def has(self, loc: Location | None) -> bool:
        return loc is not None and loc.line is not None and self._key(loc, None) in self._sites

    def add(self, loc: Location | None, modules: Iterable[str | None], node: str | None = None, **data: str) -> Site:
        key = self._key(loc, node)
        site = self._sites.get(key)
        if site is None:
            site = self._sites[key] = Site(loc, [], node, dict(data))
        elif site.location is not None and loc is not None and site.location.column is None and loc.column:
            site.location = loc
        for m in modules:
            if m is not None and m not in site.modules:
                site.modules.append(m)
        return site

    def __iter__(self) -> Iterator[Site]:
        return iter(self._sites.values())

