"""Record on one machine, compare on another: ``torchaudit record``, ``scan --against RUN`` and
``compare RUN_A RUN_B``. Another machine is another process whose environment changes one op
(``TA_TEST_SCALE``, read by module ``scale`` of ``fixtures/models/env_scaled.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import malicious
from tests.conftest import EXAMPLES, FIXTURES, ROOT, invoke_cli

MODEL = str(FIXTURES / "models" / "env_scaled.py")
GATE = ("--compare", "record", "--select", "TA7")  # the record comparison and its findings alone


def run(*args: str, scale: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line in a new process, with ``TA_TEST_SCALE`` set to ``scale``."""
    env = {k: v for k, v in os.environ.items() if k != "TA_TEST_SCALE"}
    if scale is not None:
        env["TA_TEST_SCALE"] = scale
    return subprocess.run([sys.executable, "-m", "torchaudit", *args], capture_output=True, text=True, cwd=str(ROOT),
                          env=env, timeout=600)


def record_comparison(data: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in data["comparisons"] if c["name"] == "record")


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recording of the env_scaled model, made in a process of its own (TA_TEST_SCALE unset)."""
    out = tmp_path_factory.mktemp("golden") / "run"
    done = run("record", MODEL, "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert f"to {out}" in done.stdout and "KB in 1 shard" in done.stdout  # where it went, and its size
    return out


def test_a_changed_op_in_another_process_is_pinned_to_its_module(golden: Path) -> None:
    out = run("scan", MODEL, "--against", str(golden), *GATE, "--json", "-", scale="1.01")
    assert out.returncode == 1, out.stderr  # the gate fails
    data = json.loads(out.stdout)
    c = record_comparison(data)
    assert c["status"] == "diverged"
    assert c["first_divergence"]["module"] == "scale" and c["first_divergence"]["op"] == "mul"
    fc2 = next(n for n in c["nodes"] if n["node"] == "fc2")
    assert fc2["max_abs"] > 1e-3 and fc2["local_max_abs"] == 0.0  # downstream: inherited, fed the recorded inputs
    [finding] = [f for f in data["findings"] if f["rule"] == "TA709"]
    assert finding["module"] == "scale" and finding["severity"] == "error"


def test_the_same_environment_matches_and_passes_the_gate(golden: Path) -> None:
    out = invoke_cli("scan", MODEL, "--against", str(golden), *GATE, "--json", "-")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert record_comparison(data)["status"] == "matched"
    section = data["recording"]
    assert section["weights_match"] is True and section["granularity"] == "op"
    assert section["environments"]["recorded"]["torch"] == section["environments"]["live"]["torch"]
    assert all(d["key"] in ("num_threads",) for d in section["environment_diff"])  # same machine, same flags


def test_a_float32_recording_against_a_live_bfloat16_run(golden: Path) -> None:
    out = invoke_cli("scan", MODEL, "--against", str(golden), *GATE, "--candidate", "cpu:bfloat16", "--json", "-")
    c = record_comparison(json.loads(out.stdout))
    assert (c["reference"]["dtype"], c["candidate"]["dtype"]) == ("float32", "bfloat16")
    assert c["tolerance"]["rtol"] == 0.016  # bfloat16's, as assert_close has it
    assert c["status"] == "accumulated" and not any(n["diverged"] for n in c["nodes"])  # rounding, no culprit
    assert out.returncode == 1  # the golden gate holds bfloat16 to the float32 recording


def test_module_granularity_pins_the_module(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert invoke_cli("record", MODEL, "--output", str(out), "--granularity", "module").returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["granularity"] == "module"
    assert [n["name"] for n in manifest["graph"]["nodes"] if "value" in n] == ["fc1", "act", "scale", "fc2", "output"]
    done = run("scan", MODEL, "--against", str(out), *GATE, "--json", "-", scale="1.01")
    c = record_comparison(json.loads(done.stdout))
    assert c["first_divergence"]["node"] == "scale" and c["first_divergence"]["module"] == "scale"


def test_two_recordings_part_at_the_changed_op_by_total_error(golden: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TA_TEST_SCALE", "1.01")
    other = tmp_path / "other"
    assert invoke_cli("record", MODEL, "--output", str(other)).returncode == 0
    out = invoke_cli("compare", str(golden), str(other), "--json", "-")
    assert out.returncode == 1, out.stderr
    data = json.loads(out.stdout)
    [c] = data["comparisons"]
    assert c["name"] == "recordings" and c["first_divergence"]["module"] == "scale"
    assert any("local error needs a live side" in note for note in c["notes"])
    assert data["target"]["recordings"] == [str(golden), str(other)]
    created = json.loads((golden / "manifest.json").read_text())["created"]
    assert data["recording"]["created"] == created and data["recording"]["path_b"] == str(other)
    text = invoke_cli("compare", str(golden), str(other)).stdout
    assert f"made {created}" in text  # when RUN_A was made, as scan --against says it


def test_a_model_whose_weights_differ_is_compared_not_refused(golden: Path, tmp_path: Path) -> None:
    import torch

    from torchaudit.analyzer.load.target import load_target

    state = load_target(MODEL).model.state_dict()
    state["fc2.bias"] = state["fc2.bias"] + 0.5
    torch.save(state, tmp_path / "w.pt")
    out = invoke_cli("scan", MODEL, "--against", str(golden), *GATE, "--checkpoint", str(tmp_path / "w.pt"), "--json", "-")
    data = json.loads(out.stdout)
    assert data["recording"]["weights_match"] is False
    assert record_comparison(data)["first_divergence"]["node"] == "fc2"  # the node whose weights changed


def test_both_environments_and_what_differs_are_in_every_report(golden: Path, tmp_path: Path) -> None:
    from tests.json_shape import check_schema

    bundle = _copy(golden, tmp_path)  # as if recorded on a GPU machine with an older torch and TF32 on
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["environment"].update(torch="2.5.1+cu124", device_name="NVIDIA H100 80GB HBM3")
    manifest["environment"]["flags"]["allow_tf32_matmul"] = True
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    md, html = tmp_path / "r.md", tmp_path / "r.html"
    out = invoke_cli("scan", MODEL, "--against", str(bundle), *GATE, "--json", "-", "--markdown", str(md), "--html", str(html))
    data = json.loads(out.stdout)
    check_schema(data)
    diff = {d["key"]: (d["recorded"], d["live"]) for d in data["recording"]["environment_diff"]}
    assert diff["torch"][0] == "2.5.1+cu124" and diff["flags.allow_tf32_matmul"] == (True, False)
    assert "NVIDIA H100 80GB HBM3" in diff["device_name"]
    assert "torch 2.5.1+cu124 → " in md.read_text() and "**`flags.allow_tf32_matmul`**" in md.read_text()
    assert "NVIDIA H100 80GB HBM3" in html.read_text() and "<h2>Environments</h2>" in html.read_text()
    text = invoke_cli("scan", MODEL, "--against", str(bundle), *GATE).stdout
    assert "environment differences: torch 2.5.1+cu124" in text


def _refused(out: subprocess.CompletedProcess[str], *words: str) -> None:
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchaudit: error:"), out.stderr
    assert all(w in lines[0] for w in words), lines[0]


def _copy(golden: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(golden, tmp_path / "copy"))


def test_a_recording_of_another_model_is_refused(golden: Path) -> None:
    _refused(invoke_cli("scan", str(EXAMPLES / "mlp_bn_dropout.py"), "--against", str(golden)), "another model",
             "EnvScaled", "Classifier")


def test_a_recording_with_other_inputs_is_refused(golden: Path) -> None:
    _refused(invoke_cli("scan", MODEL, "--against", str(golden), "--input-shape", "8,16"), "other inputs",
             "Tensor[4,16]", "Tensor[8,16]")
    _refused(invoke_cli("scan", MODEL, "--against", str(golden), "--seed", "3"), "other inputs", "other values")


def test_a_recording_of_another_graph_is_refused(golden: Path, tmp_path: Path) -> None:
    bundle = _copy(golden, tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["graph"]["tracer"] = "export"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    _refused(invoke_cli("scan", MODEL, "--against", str(bundle)), "another graph", "export", "fx")


def test_a_newer_schema_is_refused(golden: Path, tmp_path: Path) -> None:
    bundle = _copy(golden, tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    _refused(invoke_cli("scan", MODEL, "--against", str(bundle)), "schema version 99", "upgrade torchaudit")
    _refused(invoke_cli("compare", str(golden), str(bundle)), "schema version 99")


@pytest.mark.parametrize("damage", ["no manifest", "short shard", "half a manifest"])
def test_a_truncated_recording_is_refused(golden: Path, tmp_path: Path, damage: str) -> None:
    bundle = _copy(golden, tmp_path)
    shard = bundle / "shard-00000.safetensors"
    if damage == "no manifest":
        (bundle / "manifest.json").unlink()
    elif damage == "short shard":
        shard.write_bytes(shard.read_bytes()[:-100])
    else:
        text = (bundle / "manifest.json").read_text()
        (bundle / "manifest.json").write_text(text[: len(text) // 2])
    _refused(invoke_cli("scan", MODEL, "--against", str(bundle)), "truncated")


def test_meta_is_refused_when_recording_and_in_a_recording(golden: Path, tmp_path: Path) -> None:
    _refused(invoke_cli("record", MODEL, "--output", str(tmp_path / "m"), "--meta"), "--meta")
    assert not (tmp_path / "m").exists()
    bundle = _copy(golden, tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["meta"] = True
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    _refused(invoke_cli("scan", MODEL, "--against", str(bundle)), "--meta", "no values")


def test_a_pickle_in_a_recording_is_never_loaded(golden: Path, tmp_path: Path) -> None:
    bundle = _copy(golden, tmp_path)
    canary = tmp_path / "canary"
    malicious.zip_os_system(bundle / "activations.pt", canary)  # a stray file beside the shards
    out = invoke_cli("scan", MODEL, "--against", str(bundle), *GATE)
    assert out.returncode == 0 and not canary.exists()
    shard = bundle / "shard-00000.safetensors"  # a shard that is a pickle, of the recorded length
    size = shard.stat().st_size
    malicious.zip_os_system(shard, canary)
    with shard.open("r+b") as f:
        f.truncate(size)
    out = invoke_cli("scan", MODEL, "--against", str(bundle), "--compare", "record")
    assert not canary.exists()
    assert out.returncode == 1 and "TA903" in out.stdout and "cannot be read" in out.stdout  # the comparison failed, said so


def test_record_refuses_a_folder_holding_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    _refused(invoke_cli("record", MODEL, "--output", str(tmp_path)), "holds other files")
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_an_export_traced_transformers_model(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    target = tmp_path / "llama.py"
    target.write_text(
        "import torch\nfrom transformers import LlamaConfig, LlamaForCausalLM\n\n\n"
        "def build_model():\n    torch.manual_seed(0)\n"
        "    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,\n"
        "                      num_key_value_heads=2, vocab_size=100, max_position_embeddings=64)\n"
        "    return LlamaForCausalLM(cfg).eval()\n\n\n"
        "def example_inputs():\n"
        "    return {'input_ids': torch.randint(0, 100, (1, 8), generator=torch.Generator().manual_seed(0))}\n")
    run_dir = tmp_path / "run"
    done = invoke_cli("record", str(target), "--output", str(run_dir))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["graph"]["tracer"] == "export"
    out = invoke_cli("scan", str(target), "--against", str(run_dir), *GATE, "--json", "-")
    assert out.returncode == 0, out.stderr
    c = record_comparison(json.loads(out.stdout))
    assert c["status"] == "matched" and len(c["nodes"]) > 50
    assert any(n["module"] and "layers.1" in n["module"] for n in c["nodes"])  # reached the last layer


@pytest.mark.cuda
def test_recorded_on_cuda_compared_on_the_cpu(tmp_path: Path) -> None:
    """README's path for users without a GPU beside the CPU run: a CUDA recording, compared live
    on the CPU (``--candidate``), names both devices and what differs."""
    out = tmp_path / "gpu-run"
    done = run("record", MODEL, "--device", "cuda", "--output", str(out))
    assert done.returncode == 0, done.stderr
    live = run("scan", MODEL, "--against", str(out), *GATE, "--candidate", "cpu:float32", "--json", "-")
    data = json.loads(live.stdout)
    c = record_comparison(data)
    assert (c["reference"]["device"], c["candidate"]["device"]) == ("cuda", "cpu")
    assert c["status"] in ("matched", "accumulated", "diverged") and c["nodes"]
    assert "device" in {d["key"] for d in data["recording"]["environment_diff"]}


def test_record_on_cuda_without_cuda_is_one_line(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = invoke_cli("record", MODEL, "--device", "cuda", "--output", str(tmp_path / "run"))
    assert done.returncode == 2
    assert "CUDA is not available here" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "manifest.json").exists()
