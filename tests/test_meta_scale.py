"""``scan --meta``: a 6.7B-parameter Llama scanned against a 27 GB safetensors header, no weights.

Peak RSS is measured inside the scanning process (``ru_maxrss``); wall time is printed, never
asserted (timing belongs to benchmarks/).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT
from tests.sparse_safetensors import llama_tensors, write_sparse_safetensors

pytestmark = pytest.mark.slow  # a 6.7B-parameter model built on meta, in a fresh interpreter

LLAMA = FIXTURES / "meta" / "llama_default.py"
PARAMS = 6_738_415_616  # LlamaConfig() defaults

_RUN = """
import resource, sys
from torchaudit.cli import app
try:
    rc = app(sys.argv[1:], standalone_mode=False) or 0  # click returns the Exit code here
except SystemExit as exc:
    rc = exc.code
print("RESULT", rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def scan_measured(*args: str) -> tuple[int, float, dict, str]:
    """Run ``torchaudit scan ARGS --json -`` in a fresh process: (exit code, peak RSS in GB, report, stderr)."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _RUN, "scan", *args, "--json", "-"],
        capture_output=True, text=True, cwd=str(ROOT), timeout=600,
    )
    wall = time.perf_counter() - start
    line = [ln for ln in out.stderr.splitlines() if ln.startswith("RESULT ")]
    assert line, out.stderr[-3000:]
    _, rc, rss_kb = line[-1].split()
    rss_gb = int(rss_kb) / 1024**2  # Linux reports ru_maxrss in KiB
    print(f"scan {' '.join(args)}: {wall:.1f} s wall, {rss_gb:.2f} GB peak RSS")
    return int(rc), rss_gb, json.loads(out.stdout), out.stderr


def test_llama_7b_meta_scan_against_matching_header(tmp_path: Path) -> None:
    ckpt = tmp_path / "model.safetensors"
    size = write_sparse_safetensors(ckpt, llama_tensors())
    assert size > PARAMS * 4  # the full 27 GB length, held by a sparse file
    rc, rss_gb, report, err = scan_measured(str(LLAMA), "--meta", "--checkpoint", str(ckpt))
    assert rc == 0, err[-2000:]
    assert rss_gb < 2.0
    assert report["graph"]["parameters"] == PARAMS
    assert report["graph"]["tracer"] in ("fx", "transformers-fx", "export") and report["graph"]["nodes"] > 1000
    assert report["meta"]["built_with"] == "meta device, then FakeTensorMode" and report["meta"]["values"] is False
    codes = {f["rule"] for f in report["findings"]}
    assert not codes & {"TA301", "TA302", "TA303", "TA304", "TA305"}, codes
    # rules that need values were skipped, and the report says why
    assert "values" in report["skipped_rules"]["TA307"]
    assert report["target"]["checkpoint_info"]["tensors"] == len(llama_tensors())
    assert report["target"]["checkpoint_info"]["strict_load"]["ok"] is False  # no data was loaded


def test_llama_7b_meta_scan_finds_a_wrong_shape_and_a_missing_key(tmp_path: Path) -> None:
    tensors = llama_tensors()
    tensors["model.layers.5.mlp.down_proj.weight"] = ((4096, 11000), "F32")
    del tensors["model.layers.31.post_attention_layernorm.weight"]
    ckpt = tmp_path / "model.safetensors"
    write_sparse_safetensors(ckpt, tensors)
    rc, rss_gb, report, err = scan_measured(str(LLAMA), "--meta", "--checkpoint", str(ckpt))
    assert rc == 1, err[-2000:]  # TA301 and TA304 are errors: the gate fails
    assert rss_gb < 2.0
    by_rule = {}
    for f in report["findings"]:
        by_rule.setdefault(f["rule"], []).append(f)
    assert [f["module"] for f in by_rule["TA304"]] == ["model.layers.5.mlp.down_proj"]
    assert by_rule["TA304"][0]["evidence"]["checkpoint_shape"] == [4096, 11000]
    assert by_rule["TA304"][0]["evidence"]["model_shape"] == [4096, 11008]
    assert [f["evidence"]["missing_keys"] for f in by_rule["TA301"]] == [["model.layers.31.post_attention_layernorm.weight"]]
    assert math.isclose(report["graph"]["parameters"], PARAMS)
