"""Expectations that fixture model files carry inline (flake8-bugbear / semgrep style).

* ``# expect: TA101@block`` on a source line: a TA101 finding at this line, module ``block``
  (``@<root>`` for the root module, ``@<none>`` for a finding with no module);
* ``# ok: TA101`` on a look-alike line: no TA101 finding at this line;
* for evidence without a source line, module-level lists in the fixture:
  ``EXPECT = [("TA106", "")]`` and ``OK = [("TA106", "")]``;
* ``CLEAN = True``: the model must produce no error or warning at all;
* ``# lint: graph-only`` on a line: its ``expect`` markers come from the traced graph alone, so
  ``torchaudit lint`` (the source without a model) is not expected to report them.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

_MARK = re.compile(r"#\s*(expect|ok):\s*([A-Za-z0-9@<>._, -]+?)\s*(?=#|$)")
_ITEM = re.compile(r"^(TA\d{3})(?:@(\S+))?$")
_GRAPH_ONLY = re.compile(r"#\s*lint:\s*graph-only\b")


@dataclass(frozen=True)
class Marker:
    kind: str  # "expect" or "ok"
    code: str
    line: int | None  # None: a module-level EXPECT/OK entry
    module: str | None = None
    has_module: bool = False
    lint: bool = True  # False: only the traced graph shows it (``# lint: graph-only``)


def _module(text: str | None) -> tuple[str | None, bool]:
    if text is None:
        return None, False
    return {"<root>": "", "<none>": None}.get(text, text), True


def parse(path: Path) -> tuple[list[Marker], bool]:
    text = path.read_text()
    markers: list[Marker] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for kind, items in _MARK.findall(line):
            for item in filter(None, (i.strip() for i in items.split(","))):
                m = _ITEM.match(item)
                assert m, f"{path.name}:{lineno}: bad marker {item!r}"
                module, has = _module(m.group(2))
                assert kind == "ok" or has, f"{path.name}:{lineno}: expect markers name the module (TA101@block)"
                markers.append(Marker(kind, m.group(1), lineno, module, has, lint=not _GRAPH_ONLY.search(line)))
    clean = False
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("EXPECT", "OK"):
                for code, module in ast.literal_eval(node.value):
                    markers.append(Marker(name.lower(), code, None, module, True))
            elif name == "CLEAN":
                clean = bool(ast.literal_eval(node.value))
    return markers, clean
