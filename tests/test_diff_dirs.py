"""``torchaudit diff`` on save_pretrained directories and sharded indexes (README, "Two
checkpoints of one model"): ``diff DIR_A DIR_B`` with the model from A's config.json, ``diff
TARGET A B`` with directories or indexes, single files against shards, and the bad inputs,
each one line and exit 2 with nothing loaded. Tiny transformers models built offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import torchaudit
from tests import malicious
from tests.conftest import invoke_cli
from torchaudit.errors import TorchAuditError

transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
CHANGED = "model.layers.1.mlp.down_proj.weight"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``a`` (one safetensors file); ``b``, the same Llama with one tensor changed, as 3
    safetensors shards; ``b_bin``, the same as 3 .bin shards; ``bert`` (another architecture)."""
    root = tmp_path_factory.mktemp("diffdirs")
    torch.manual_seed(0)
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(vocab_size=100, **TINY))
    llama.save_pretrained(root / "a", safe_serialization=True)
    with torch.no_grad():
        llama.get_submodule(CHANGED.rpartition(".")[0]).weight.mul_(1.5)
    llama.save_pretrained(root / "b", safe_serialization=True, max_shard_size="50KB")
    llama.save_pretrained(root / "b_bin", safe_serialization=False, max_shard_size="50KB")
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=100, **TINY))
    bert.save_pretrained(root / "bert", safe_serialization=True)
    return root


def _diff(tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    out = tmp_path / "diff.json"
    result = invoke_cli("diff", *args, "--json", str(out))
    return result.returncode, (json.loads(out.read_text()) if out.exists() else {}), result.stderr


def _differing(report: dict) -> dict[str, str]:
    return {row["key"]: row["status"] for row in report["tensor_diff"] if row["status"] != "unchanged"}


def _one_line_exit_2(*args: str) -> str:
    result = invoke_cli("diff", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchaudit: error: "), result.stderr
    return lines[0]


def test_two_directories(saved: Path, tmp_path: Path) -> None:
    """The model comes from A's config.json; the changed tensor is in the table, and the
    comparison pins where the activations part: in the changed layer."""
    code, report, err = _diff(tmp_path, str(saved / "a"), str(saved / "b"))
    assert code == 0, err
    assert report["target"]["model_class"] == "LlamaForCausalLM"
    assert report["target"]["checkpoints"] == [str(saved / "a" / "model.safetensors"), str(saved / "b" / "model.safetensors.index.json")]
    assert _differing(report) == {CHANGED: "changed"}
    (row,) = [r for r in report["tensor_diff"] if r["key"] == CHANGED]
    assert row["max_rel"] == pytest.approx(0.5, rel=1e-5)
    (comparison,) = report["comparisons"]
    assert comparison["name"] == "checkpoints" and comparison["status"] == "diverged"
    assert comparison["first_divergence"]["module"].startswith("model.layers.1.mlp")


def test_target_with_a_directory_and_an_index(saved: Path, tmp_path: Path) -> None:
    index = saved / "b" / "model.safetensors.index.json"
    code, report, err = _diff(tmp_path, str(saved / "b_bin"), str(saved / "a"), str(index))
    assert code == 0, err
    assert _differing(report) == {CHANGED: "changed"}
    assert report["comparisons"][0]["status"] == "diverged"


def test_bin_shards_against_safetensors_shards(saved: Path, tmp_path: Path) -> None:
    """The same weights as .bin shards and as safetensors shards: nothing differs."""
    code, report, err = _diff(tmp_path, str(saved / "b_bin"), str(saved / "b"))
    assert code == 0, err
    assert _differing(report) == {}
    assert report["comparisons"][0]["status"] == "matched"


def test_static_only_is_the_table_without_a_comparison(saved: Path, tmp_path: Path) -> None:
    code, report, err = _diff(tmp_path, str(saved / "a"), str(saved / "b_bin"), "--static-only")
    assert code == 0, err
    assert _differing(report) == {CHANGED: "changed"}
    (comparison,) = report["comparisons"]
    assert comparison["status"] == "skipped" and comparison["skipped_reason"].startswith("--static-only")


def test_python_api_takes_both_forms(saved: Path) -> None:
    a, b = str(saved / "a"), str(saved / "b")
    two = torchaudit.diff(a, b, static_only=True)
    three = torchaudit.diff(a, a, str(saved / "b" / "model.safetensors.index.json"), static_only=True)
    assert two.extras["tensor_diff"] == three.extras["tensor_diff"]
    assert {r["key"] for r in two.extras["tensor_diff"] if r["status"] == "changed"} == {CHANGED}


def test_config_differences_that_keep_the_shapes_are_noted(saved: Path, tmp_path: Path) -> None:
    folder = tmp_path / "b_theta"
    shutil.copytree(saved / "b", folder)
    config = json.loads((folder / "config.json").read_text())
    config["rope_theta"] = 500000.0
    (folder / "config.json").write_text(json.dumps(config))
    code, report, err = _diff(tmp_path, str(saved / "a"), str(folder))
    assert code == 0, err
    (note,) = report["comparisons"][0]["notes"]
    assert "rope_theta 10000.0 -> 500000.0" in note and "model built from A's" in note


def test_another_architecture_or_shape_is_exit_2(saved: Path, tmp_path: Path) -> None:
    line = _one_line_exit_2(str(saved / "a"), str(saved / "bert"))
    assert "names BertModel" in line and "LlamaForCausalLM" in line and "pass TARGET A B" in line
    folder = tmp_path / "wide"
    shutil.copytree(saved / "b", folder)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 128
    (folder / "config.json").write_text(json.dumps(config))
    line = _one_line_exit_2(str(saved / "a"), str(folder))
    assert "other shapes" in line and "intermediate_size 64 -> 128" in line


def test_two_paths_need_a_directory_with_a_config_first(saved: Path) -> None:
    line = _one_line_exit_2(str(saved / "a" / "model.safetensors"), str(saved / "b"))
    assert "is not a directory" in line and "pass TARGET A B" in line
    line = _one_line_exit_2("tests/dynamic/models.py:LinearBN", str(saved / "b"))
    assert "pass TARGET A B" in line
    with pytest.raises(TorchAuditError, match="takes two checkpoints, A and B"):
        torchaudit.diff(torch.nn.Linear(2, 2), str(saved / "a"))


def test_directory_without_config_or_weights(saved: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    assert "has no config.json" in _one_line_exit_2(str(bare), str(saved / "b"))
    (bare / "config.json").write_text((saved / "a" / "config.json").read_text())
    assert "without weights" in _one_line_exit_2(str(bare), str(saved / "b"))
    assert "without weights" in _one_line_exit_2(str(saved / "a"), str(bare))
    assert "without weights" in _one_line_exit_2(str(saved / "a"), str(saved / "a"), str(bare))


def test_index_naming_a_missing_shard(saved: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(saved / "b", folder)
    (folder / "model-00002-of-00003.safetensors").unlink()
    expected = "missing beside it: model-00002-of-00003.safetensors"
    assert expected in _one_line_exit_2(str(saved / "a"), str(folder))
    assert expected in _one_line_exit_2(str(saved / "a"), str(saved / "a"), str(folder / "model.safetensors.index.json"))


def test_architecture_not_in_transformers(saved: Path, tmp_path: Path) -> None:
    folder = tmp_path / "x"
    shutil.copytree(saved / "a", folder)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForEverything"]
    (folder / "config.json").write_text(json.dumps(config))
    assert "'NoSuchModelForEverything', which transformers" in _one_line_exit_2(str(folder), str(saved / "b"))
    assert "'NoSuchModelForEverything', which transformers" in _one_line_exit_2(str(saved / "a"), str(folder))


def test_malicious_bin_shard_is_refused_and_never_unpickled(saved: Path, tmp_path: Path) -> None:
    folder = tmp_path / "evil"
    shutil.copytree(saved / "b_bin", folder)
    canary = tmp_path / "canary"
    shard = sorted(folder.glob("pytorch_model-*.bin"))[-1]
    malicious.zip_os_system(shard, canary)
    for args in ((str(saved / "a"), str(folder)), (str(folder), str(saved / "a")), (str(saved / "a"), str(saved / "a"), str(folder))):
        line = _one_line_exit_2(*args)
        assert shard.name in line and "TA601" in line
    assert not canary.exists(), "the payload ran"


def test_help_explains_both_forms() -> None:
    result = invoke_cli("diff", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "'diff TARGET A B'" in text and "'diff DIR_A DIR_B'" in text and "*.index.json" in text
