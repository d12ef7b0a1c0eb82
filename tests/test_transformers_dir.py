"""``save_pretrained`` directories as TARGET and as --checkpoint, sharded safetensors and .bin
(README, "save_pretrained directories"): tiny transformers models built offline from a config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests import malicious
from tests.conftest import invoke_cli

transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``llama`` (3 safetensors shards + index), ``llama_bin`` (3 .bin shards + index), ``vit``."""
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(vocab_size=100, **TINY))
    llama.save_pretrained(root / "llama", safe_serialization=True, max_shard_size="50KB")
    llama.save_pretrained(root / "llama_bin", safe_serialization=False, max_shard_size="50KB")
    vit = transformers.ViTForImageClassification(transformers.ViTConfig(image_size=32, patch_size=8, **TINY))
    vit.save_pretrained(root / "vit", safe_serialization=True)
    return root


def _scan(tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    out = tmp_path / "r.json"
    result = invoke_cli("scan", *args, "--static-only", "--json", str(out))
    return result.returncode, (json.loads(out.read_text()) if out.exists() else {}), result.stderr


def _rules(report: dict) -> set[str]:
    return {f["rule"] for f in report["findings"]}


@pytest.mark.parametrize("name, index", [("llama", "model.safetensors.index.json"), ("llama_bin", "pytorch_model.bin.index.json")])
def test_sharded_directory_is_a_target(saved: Path, tmp_path: Path, name: str, index: str) -> None:
    code, report, err = _scan(tmp_path, str(saved / name))
    assert code == 0, err
    target = report["target"]
    assert target["model_class"] == "LlamaForCausalLM"
    assert target["inputs_source"].startswith("synthesized from LlamaForCausalLM's config (input_ids")
    assert "input_ids=Tensor[2,16]:int64" in target["inputs"] and "attention_mask=" in target["inputs"]
    info = target["checkpoint_info"]
    assert Path(info["path"]).name == index and len(info["shards"]) == 3
    assert info["strict_load"]["ok"] is True
    assert not _rules(report) & {"TA301", "TA302", "TA303", "TA601"}


def test_image_model_gets_pixel_values(saved: Path, tmp_path: Path) -> None:
    code, report, err = _scan(tmp_path, str(saved / "vit"))
    assert code == 0, err
    assert report["target"]["model_class"] == "ViTForImageClassification"
    assert report["target"]["inputs"] == "pixel_values=Tensor[2,3,32,32]:float32"


def test_input_shape_wins(saved: Path, tmp_path: Path) -> None:
    code, report, err = _scan(tmp_path, str(saved / "llama"), "--input-shape", "2,8:int64")
    assert code == 0, err
    assert report["target"]["inputs_source"] == "--input-shape 2,8:int64"


def test_the_loaded_weights_are_the_directorys(saved: Path) -> None:
    from torchaudit.analyzer.pipeline import prepare

    prepared = prepare(str(saved / "llama"), traced=False, seed=123)  # another seed: other random weights
    reference = transformers.LlamaForCausalLM.from_pretrained(saved / "llama", local_files_only=True)
    for key, value in reference.state_dict().items():
        assert torch.equal(prepared.model.state_dict()[key], value), key


def test_index_file_as_checkpoint(saved: Path, tmp_path: Path) -> None:
    index = saved / "llama" / "model.safetensors.index.json"
    code, report, err = _scan(tmp_path, str(saved / "llama_bin"), "--checkpoint", str(index))
    assert code == 0, err
    assert report["target"]["checkpoint"] == str(index)
    assert report["target"]["checkpoint_info"]["strict_load"]["ok"] is True


def test_malicious_bin_shard_is_never_unpickled(saved: Path, tmp_path: Path) -> None:
    folder = tmp_path / "evil"
    shutil.copytree(saved / "llama_bin", folder)
    canary = tmp_path / "canary"
    shard = sorted(folder.glob("pytorch_model-*.bin"))[-1]
    malicious.zip_os_system(shard, canary)
    code, report, err = _scan(tmp_path, str(folder))
    assert not canary.exists(), "the payload ran"
    assert code == 1, err
    assert "TA601" in _rules(report)
    info = report["target"]["checkpoint_info"]
    assert info["unpickled"] is False and info["not_loaded_reason"].startswith(shard.name)


def _one_line_exit_2(*args: str) -> str:
    result = invoke_cli("scan", *args, "--static-only")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_directory_without_config_or_weights(saved: Path, tmp_path: Path) -> None:
    assert "without config.json" in _one_line_exit_2(str(tmp_path))
    (tmp_path / "config.json").write_text((saved / "llama" / "config.json").read_text())
    assert "without weights" in _one_line_exit_2(str(tmp_path))


def test_index_naming_a_missing_shard(saved: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(saved / "llama", folder)
    (folder / "model-00002-of-00003.safetensors").unlink()
    assert "missing beside it: model-00002-of-00003.safetensors" in _one_line_exit_2(str(folder))


def test_architecture_not_in_transformers(saved: Path, tmp_path: Path) -> None:
    folder = tmp_path / "x"
    shutil.copytree(saved / "vit", folder)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForEverything"]
    (folder / "config.json").write_text(json.dumps(config))
    assert "'NoSuchModelForEverything', which transformers" in _one_line_exit_2(str(folder))


def test_checkpoint_command_reads_an_index_as_one_checkpoint(saved: Path, tmp_path: Path) -> None:
    """`torchaudit checkpoint INDEX` reports the sharded checkpoint as one file: every shard's
    tensors, every .bin shard's globals, one verdict."""
    report = tmp_path / "c.json"
    for index in ("llama/model.safetensors.index.json", "llama_bin/pytorch_model.bin.index.json"):
        res = invoke_cli("checkpoint", str(saved / index), "--json", str(report))
        assert res.returncode == 0, res.stderr
        (entry,) = json.loads(report.read_text())["checkpoint_files"]
        model = transformers.LlamaForCausalLM.from_pretrained(saved / index.split("/")[0])
        assert entry["tensors"] == len(model.state_dict()) and entry["verdict"] == "loads"


def test_synthesized_inputs_let_the_batch_comparison_run(saved: Path, tmp_path: Path) -> None:
    """Two samples, so each sample alone can be compared with the batch: not skipped."""
    report = tmp_path / "b.json"
    res = invoke_cli("scan", str(saved / "llama"), "--compare", "batch", "--json", str(report))
    assert res.returncode == 0, res.stderr
    (batch,) = json.loads(report.read_text())["comparisons"]
    assert batch["name"] == "batch" and batch["status"] == "matched", batch.get("reason")
