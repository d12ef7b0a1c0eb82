"""The benchmark scripts run and print what README says (their figures are not asserted:
timing belongs to the scripts, never to tests); the start-up path does not import torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=str(ROOT), timeout=600)


@pytest.mark.slow  # fresh interpreters, one of which imports torch
def test_version_and_help_do_not_import_torch() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_startup import torch_imported
    finally:
        sys.path.pop(0)
    assert torch_imported("--version") is False
    assert torch_imported("--help") is False
    # the probe can see an import: a command that needs torch does import it
    probe = _run("-c", "import sys, torchaudit.api; print('torch' in sys.modules)")
    assert probe.stdout.strip() == "True"


@pytest.mark.slow  # runs the benchmark script: at least 2 s of scans per size, in a fresh interpreter
def test_bench_static_prints_time_per_node_for_each_size() -> None:
    out = _run("benchmarks/bench_static.py", "--blocks", "2", "4", "--repeat", "1", "--json")
    assert out.returncode in (0, 1), out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    rows = result["rows"]
    assert [r["blocks"] for r in rows] == [2, 4]
    assert [r["nodes"] for r in rows] == [6 * 2 + 3, 6 * 4 + 3]  # x, 6 per block, head, output
    for r in rows:  # each row's figure is its own time over its own node count
        assert r["seconds"] > 0 and r["us_per_node"] == pytest.approx(r["seconds"] / r["nodes"] * 1e6)
    per_node = [r["us_per_node"] for r in rows]
    assert result["per_node_ratio"] == pytest.approx(max(per_node) / min(per_node))
    # the verdict and the exit code follow the printed ratio and target
    assert result["ok"] == (result["per_node_ratio"] <= result["target"])
    assert out.returncode == (0 if result["ok"] else 1)


@pytest.mark.slow  # fresh interpreters: three scans and a header load
def test_bench_checkpoint_claims_prints_each_case() -> None:
    out = _run("benchmarks/bench_checkpoint_claims.py", "--tensors", "300", "--repeat", "1", "--json")
    assert out.returncode in (0, 1), out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    cases = result["cases"]
    assert set(cases) == {"clean", "big-header", "stride-0"}
    assert "TA307" in cases["stride-0"]["findings"] and "TA307" not in cases["clean"]["findings"]
    assert cases["big-header"]["findings"] == ["TA301", "TA302"]  # 300 modules' keys: one TA302 group
    for case in cases.values():
        assert case["seconds"] > 0 and case["rss_mb"] > 0 and case["rc"] in (0, 1)
    assert result["header_seconds"] > 0
    assert out.returncode == (0 if result["ok"] else 1)  # the verdict and the exit code agree


@pytest.mark.slow  # two CLI runs, each in a fresh interpreter that imports torch
def test_bench_checkpoint_security_prints_one_line_per_file_and_the_summary() -> None:
    out = _run("benchmarks/bench_checkpoint_security.py", "--only", "zip_os_system", "--only", "ansi_global_name")
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]  # 1 would mean a payload ran
    lines = out.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["zip_os_system", "ansi_global_name"]
    assert lines[2].startswith("probes: ") and "/1 ok" in lines[2]
    assert re.fullmatch(r"\d/1 malicious flagged, 0 executed, \d internal errors, worst time \d+\.\d\d s \(\w+\), "
                        r"worst RSS \d+ MB \(\w+\)", lines[3]), lines[3]


@pytest.mark.slow  # fresh interpreters, one per case
def test_bench_lint_prints_time_per_file_without_torch() -> None:
    out = _run("benchmarks/bench_lint.py", "--repeat", "1", "--json")
    assert out.returncode in (0, 1), out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    rows = result["rows"]
    assert rows[0]["files"] == 1 and rows[1]["files"] > 30
    for r in rows:
        assert r["torch_imported"] is False
        assert r["per_file_s"] == pytest.approx(r["seconds"] / r["files"])
    assert result["ok"] == all(r["per_file_s"] < result["target_s"] for r in rows)
    assert out.returncode == (0 if result["ok"] else 1)


@pytest.mark.slow  # writes two small sharded directories and runs the CLI twice in fresh interpreters
def test_bench_diff_table_prints_peak_rss_and_finds_the_changes() -> None:
    out = _run("benchmarks/bench_diff_table.py", "--size-mb", "20", "--shards", "2", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["exit_code"] == 0 and result["changed_found"] is True
    assert result["shards"] == 2 and result["peak_rss_mb"] > 0 and result["tiny_dirs_peak_rss_mb"] > 0
def _bench_streaming():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_streaming
    finally:
        sys.path.pop(0)
    return bench_streaming


@pytest.mark.slow  # transformers models, built and loaded
def test_bench_streaming_writes_what_save_pretrained_writes(tmp_path) -> None:
    """The generator's directories, written tensor by tensor from a meta build, are the ones
    save_pretrained writes for that config: same files, config, keys and sizes; from_pretrained
    loads them with nothing missing or unexpected, and B differs from A in one tensor, by 1.01."""
    import torch
    transformers = pytest.importorskip("transformers")
    bench = _bench_streaming()
    written = bench.write_pair(tmp_path / "a", tmp_path / "b", bench.TINY, bench.QUICK_SHARD_BYTES)
    config = bench.llama_config(bench.TINY)
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path / "real", max_shard_size=bench.QUICK_SHARD_BYTES)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(p.name for p in (tmp_path / "real").iterdir())
    for name in ("config.json", "generation_config.json"):
        assert json.loads((tmp_path / "a" / name).read_text()) == json.loads((tmp_path / "real" / name).read_text())
    index, real = (json.loads((tmp_path / d / "model.safetensors.index.json").read_text()) for d in ("a", "real"))
    assert index["metadata"] == real["metadata"] and set(index["weight_map"]) == set(real["weight_map"])
    tied = transformers.LlamaConfig(**bench.TINY, tie_word_embeddings=True)  # a tied tensor is written once
    with torch.device("meta"):
        assert [k for k, _ in bench.state_shapes(tied)] == list(transformers.LlamaForCausalLM(tied).state_dict())[:-1]
    models = {}
    for side in ("a", "b"):
        model, info = transformers.LlamaForCausalLM.from_pretrained(tmp_path / side, local_files_only=True, output_loading_info=True)
        assert all(not v for v in info.values()), info
        models[side] = model.state_dict()
    changed = [k for k in models["a"] if not torch.equal(models["a"][k], models["b"][k])]
    assert changed == [written["changed"]] == [bench.perturbed_key(config)]
    assert torch.equal(models["b"][changed[0]], models["a"][changed[0]] * bench.SCALE)
    assert models["a"]["lm_head.weight"].std().item() == pytest.approx(bench.STD, rel=0.05)


@pytest.mark.slow  # fresh interpreters: a static scan and three runs of the command line
def test_bench_streaming_quick_checks_the_directories_and_runs_each_command() -> None:
    out = _run("benchmarks/bench_streaming.py", "--quick", "--json")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    static = result["static"]
    assert static["strict_load_ok"] is True and not {"TA301", "TA302", "TA303", "TA304", "TA305"} & set(static["rules"])
    runs = result["runs"]
    assert set(runs) == {"diff", "scan-dtype", "diff-baseline", "scan-dtype-baseline"}
    for name, r in runs.items():  # each streaming run ran, or was refused for the flag this branch may not have yet
        assert r["refused"] == "--stream-weights" or (r["rc"] in (0, 1) and r["rss_mb"] > 0), (name, r["stderr"])
    assert runs["scan-dtype-baseline"]["found"]["comparisons"]["dtype"]["status"] in ("matched", "diverged", "accumulated")
    for name in ("diff", "diff-baseline"):  # a diff that ran names the one tensor B changed
        if runs[name]["refused"] is None:
            assert runs[name]["found"]["changed"] == [result["weights"]["changed"]], name
    assert runs["diff-baseline"]["found"]["comparisons"]["checkpoints"]["status"] != "skipped"
    assert not Path(result["folder"]).exists()  # the temporary folder is always removed
