"""What the rule engine needs of the settings: rule-code parsing (``--select``/``--ignore``) and
the check that every selector names a registered rule.

Reading ``[tool.torchaudit]`` and resolving flags over it is ``torchaudit/settings.py``.
"""

from __future__ import annotations

from typing import Iterable

from torchaudit.errors import OptionError
from torchaudit.settings import codes

__all__ = ["codes", "check_selectors"]


def check_selectors(select: Iterable[str], ignore: Iterable[str], known: Iterable[str] | None = None) -> None:
    """Every selector must match some registered rule: ``--select TA999`` would pass vacuously.
    ``known``: the rule codes (default: the registry's, which imports the rules, so torch: callers
    run it after the cheap checks, before the model loads; lint passes ``rules.manifest.CODES``)."""
    if known is None:
        from torchaudit.rules.engine import catalogue

        known = catalogue()
    known = list(known)
    for option, values in (("--select", select), ("--ignore", ignore)):
        for code in values:
            if not any(k.startswith(code) for k in known):
                families = sorted({k[:3] + "xx" for k in known})
                raise OptionError(f"unknown rule selector {code!r} in {option}: it matches no rule",
                                  f"use a code or a prefix of one of the families {', '.join(families)} "
                                  "(run 'torchaudit rules' for the list)")
