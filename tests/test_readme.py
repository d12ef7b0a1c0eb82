"""README's console examples are real: each ```console block whose commands can run here is run
and its output compared with what README shows, so README cannot drift from the tool.

In an expected block, a line that is only ``...`` stands for any number of lines, and `` ...``
inside a line for any text. Commands run in a scratch folder holding copies of the repository's
``examples/`` and ``tests/fixtures/meta/``; a file an example names and does not make itself (the 27 GB
checkpoint header of the ``--meta`` example) is made by the test (``MAKERS``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

README = ROOT / "README.md"


@dataclass
class Example:
    line: int  # README line of the block's first command
    commands: list[str]
    expected: list[str]


def examples() -> list[Example]:
    out: list[Example] = []
    lines = README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```console":
            i += 1
            continue
        start, i = i + 1, i + 1
        block: list[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            block.append(lines[i])
            i += 1
        commands: list[str] = []
        expected: list[str] = []
        for text in block:
            if text.startswith("$ ") and not expected:
                commands.append(text[2:])
            elif commands and commands[-1].endswith("\\") and not expected:
                commands[-1] = commands[-1][:-1] + " " + text.strip()
            else:
                expected.append(text)
        if commands and expected:
            out.append(Example(start + 1, commands, expected))
    return out


def _pattern(line: str) -> re.Pattern[str]:
    parts = line.rstrip().split(" ...")
    return re.compile(".*".join(re.escape(p) for p in parts) + (".*" if line.rstrip().endswith(" ...") else "") + r"\Z")


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` fits ``expected`` line by line, ``...`` lines matching any run of lines."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(matches(rest, actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and bool(_pattern(head).match(actual[0].rstrip())) and matches(rest, actual[1:])


def _run(example: Example, folder: Path) -> list[str]:
    env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1"}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    output: list[str] = []
    for command in example.commands:
        words = shlex.split(command, comments=True)
        if words and words[0] == "torchaudit":
            words = [sys.executable, "-m", "torchaudit", *words[1:]]
        elif words and words[0] == "python":
            words = [sys.executable, *words[1:]]
        done = subprocess.run(words, capture_output=True, text=True, cwd=folder, env=env, timeout=600)
        output = (done.stdout + done.stderr).splitlines()
    return output


def _llama_7b_header(path: Path) -> None:
    """The file README's --meta example scans: LlamaConfig()'s layout as a sparse 27 GB
    safetensors header, layer 5's down_proj one row short and layer 31's last norm missing."""
    from tests.sparse_safetensors import llama_tensors, write_sparse_safetensors

    tensors = llama_tensors()
    tensors["model.layers.5.mlp.down_proj.weight"] = ((4096, 11000), "F32")
    del tensors["model.layers.31.post_attention_layernorm.weight"]
    write_sparse_safetensors(path, tensors)


MAKERS = {"llama-7b.safetensors": _llama_7b_header}  # files README's examples name, made by the test


def _needs(example: Example, folder: Path) -> list[str]:
    """Files the example's commands name that the scratch folder does not have."""
    missing = []
    for command in example.commands:
        for word in shlex.split(command, comments=True):
            if re.search(r"\.(safetensors|pt|pth|bin|ckpt)$", word) and not (folder / word).exists() and "save" not in command:
                created = any(word in c for c in example.commands if c is not command and "save" in c)
                if not created:
                    missing.append(word)
    return missing


EXAMPLES = examples()


def test_readme_has_console_examples() -> None:
    assert len(EXAMPLES) >= 2, "README lost its console examples"


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=[f"line{e.line}" for e in EXAMPLES])
def test_console_example_matches_the_tool(example: Example, tmp_path: Path) -> None:
    for name in ("examples", "tests/fixtures/meta"):  # copies: paths then show as README's, relative
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in _needs(example, tmp_path):
        assert name in MAKERS, f"README line {example.line} names {name}: add a maker for it to MAKERS"
        MAKERS[name](tmp_path / name)
    actual = _run(example, tmp_path)
    assert matches(example.expected, actual), (
        f"README.md line {example.line}: the console example no longer matches the tool.\n"
        "--- README shows:\n" + "\n".join(example.expected) + "\n--- the tool prints:\n" + "\n".join(actual)
    )


def test_the_matcher_takes_ellipses_for_lines_and_text() -> None:
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"]) and matches(["a", "...", "b"], ["a", "b"])
    assert matches(["x ... z"], ["x y z"]) and matches(["head ..."], ["head and tail"])
    assert not matches(["a", "b"], ["a", "c"]) and not matches(["a"], ["a", "b"]) and not matches(["x ... z"], ["x y"])
