"""Golden files for text reports, compared after scrubbing versions, dates and paths.

Regenerate them all with one command:

    TORCHAUDIT_REGEN_GOLDEN=1 python -m pytest -q tests/test_report_markdown.py tests/test_report_sarif.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from torchaudit import __version__

GOLDEN = Path(__file__).resolve().parent / "golden"
ROOT = Path(__file__).resolve().parents[1]
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z?")


def scrub(text: str) -> str:
    text = text.replace(ROOT.as_uri(), "file://<ROOT>").replace(str(ROOT), "<ROOT>")
    text = text.replace(f'"{__version__}"', '"<VERSION>"').replace(f"torchaudit {__version__}", "torchaudit <VERSION>")
    return _DATE.sub("<DATE>", text)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    text = scrub(text)
    if os.environ.get("TORCHAUDIT_REGEN_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run TORCHAUDIT_REGEN_GOLDEN=1 python -m pytest -q {name}"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from its golden file; if the change is intended: TORCHAUDIT_REGEN_GOLDEN=1 python -m pytest -q tests/"
