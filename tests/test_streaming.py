"""``--stream-weights``: comparisons on weights read from safetensors files module by module
(README, "Models bigger than memory"). The results must be the ones the in-memory run gives,
node for node; the weights must never be in memory all at once; what cannot be streamed says why."""

from __future__ import annotations

import json
import weakref
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import torchaudit
from torchaudit.analyzer.load import weight_files
from tests.conftest import invoke_cli

transformers = pytest.importorskip("transformers")

TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
            vocab_size=100)

# a plain (fx-traced) model: call_module nodes, a get_attr weight, a non-persistent buffer built
# in __init__, and one op that cancels catastrophically in float32, where the dtype comparison must diverge
PLAIN = '''
import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.norm = nn.LayerNorm(16)
        self.scale = nn.Parameter(torch.ones(16))
        self.register_buffer("offset", torch.linspace(-1, 1, 16), persistent=False)

    def forward(self, x):
        return self.norm(self.fc(x) * self.scale + self.offset)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = Block()
        self.b = Block()
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        h = self.a(x)
        h = (h + 1e8) - 1e8
        return self.head(self.b(h))


def build_model():
    return Net()


def example_inputs():
    return (torch.randn(2, 16),)
'''


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``llama`` (one file), ``llama_b`` (sharded, one weight changed), ``plain/model.py`` with
    ``plain/weights.safetensors``."""
    root = tmp_path_factory.mktemp("stream")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(architectures=["LlamaForCausalLM"], **TINY)
    llama = transformers.LlamaForCausalLM(config)
    llama.save_pretrained(root / "llama", safe_serialization=True)
    with torch.no_grad():
        llama.model.layers[1].mlp.down_proj.weight.mul_(1.5)
    llama.save_pretrained(root / "llama_b", safe_serialization=True, max_shard_size="40KB")
    (root / "plain").mkdir()
    (root / "plain" / "model.py").write_text(PLAIN)
    namespace: dict = {}
    exec(compile(PLAIN, "plain", "exec"), namespace)
    torch.manual_seed(1)
    net = namespace["build_model"]()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(root / "plain" / "weights.safetensors"))
    return root


def _scan(tmp_path: Path, name: str, *args: str) -> tuple[int, dict, str]:
    out = tmp_path / f"{name}.json"
    result = invoke_cli("scan", *args, "--json", str(out))
    return result.returncode, (json.loads(out.read_text()) if out.exists() else {}), result.stdout + result.stderr


def _by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["comparisons"]}


def _same_results(memory: dict, streamed: dict) -> None:
    """Every comparison: status, first divergence, output errors and every node's three errors."""
    mem, st = _by_name(memory), _by_name(streamed)
    assert mem.keys() == st.keys()
    for name in mem:
        a, b = mem[name], st[name]
        assert a["status"] == b["status"] and a["status"] in ("matched", "diverged", "accumulated"), (name, a.get("skipped_reason"))
        assert a["first_divergence"] == b["first_divergence"], name
        assert a["output"] == b["output"], name
        assert a["nodes"] == b["nodes"], name
        assert a["nodes"], name


def test_transformers_directory_streamed_gives_the_in_memory_results(saved: Path, tmp_path: Path) -> None:
    args = (str(saved / "llama"), "--compare", "dtype,mode,determinism,batch")
    code_m, memory, out_m = _scan(tmp_path, "memory", *args)
    code_s, streamed, out_s = _scan(tmp_path, "streamed", *args, "--stream-weights")
    assert code_m == code_s == 0, out_m + out_s
    _same_results(memory, streamed)
    assert "streamed_weights" not in memory
    st = streamed["streamed_weights"]
    assert st["reason"] == "--stream-weights was passed"
    assert st["bytes"] == (saved / "llama" / "model.safetensors").stat().st_size - _header_bytes(saved / "llama" / "model.safetensors")
    assert st["bytes_read"] >= 2 * st["bytes"]  # both sides of each comparison read their weights
    assert "weights streamed from" in out_s and "because --stream-weights was passed" in out_s


def _header_bytes(path: Path) -> int:
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def test_plain_model_with_checkpoint_streamed_blames_the_same_op(saved: Path, tmp_path: Path) -> None:
    """call_module nodes read their module's tensors per call; the non-persistent buffer comes
    from the module's own __init__; the float32 cancellation is the top contributor either way."""
    args = (str(saved / "plain" / "model.py"), "--checkpoint", str(saved / "plain" / "weights.safetensors"),
            "--compare", "dtype", "--reference", "cpu:float64", "--candidate", "cpu:float32")
    _, memory, out_m = _scan(tmp_path, "memory", *args)
    _, streamed, out_s = _scan(tmp_path, "streamed", *args, "--stream-weights")
    _same_results(memory, streamed)
    dtype = _by_name(streamed)["dtype"]
    assert dtype["status"] == "accumulated"  # float32 loses h in h + 1e8, within rounding of each op
    assert dtype["contributors"] == _by_name(memory)["dtype"]["contributors"]
    assert dtype["contributors"][0]["op"] in ("add", "sub"), dtype["contributors"]
    assert _by_name(streamed)["custom"]["status"] == _by_name(memory)["custom"]["status"]


def test_diverging_checkpoint_streamed_and_in_memory_agree_on_the_module(saved: Path, tmp_path: Path) -> None:
    """A changed weight in a sharded checkpoint: the dtype comparison of that checkpoint streams
    shard by shard and gives what the in-memory run gives."""
    args = (str(saved / "llama_b"), "--compare", "dtype")
    _, memory, _ = _scan(tmp_path, "memory", *args)
    _, streamed, out = _scan(tmp_path, "streamed", *args, "--stream-weights")
    _same_results(memory, streamed)
    assert len(list((saved / "llama_b").glob("*.safetensors"))) > 1


def test_weights_are_never_all_in_memory(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the comparison runs, the weights it read and still holds stay a fraction of the
    checkpoint: each is dropped after the last op that uses it."""
    alive: list[weakref.ref] = []
    sizes: dict[int, int] = {}
    peak = {"bytes": 0}
    read = weight_files.WeightFiles.read

    def counting(self: weight_files.WeightFiles, key: str) -> torch.Tensor:
        t = read(self, key)
        alive.append(weakref.ref(t))
        sizes[id(alive[-1])] = t.numel() * t.element_size()
        held = sum(sizes[id(r)] for r in alive if r() is not None)
        peak["bytes"] = max(peak["bytes"], held)
        return t

    monkeypatch.setattr(weight_files.WeightFiles, "read", counting)
    report = torchaudit.scan(str(saved / "llama"), compare=["dtype"], stream_weights=True)
    assert report.comparisons[0].status.value == "matched"
    total = report.extras["streamed_weights"]["bytes"]
    assert len(alive) > 20
    assert peak["bytes"] < 0.5 * total, (peak["bytes"], total)


def test_streams_by_itself_when_the_weights_exceed_half_the_memory(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    size = weight_files.checkpoint_bytes(saved / "llama")
    monkeypatch.setattr(weight_files, "available_memory", lambda: size)  # weights: all of it, more than half
    report = torchaudit.scan(str(saved / "llama"), compare=["dtype"])
    reason = report.extras["streamed_weights"]["reason"]
    assert reason.startswith("the weights (") and "exceed half of the available memory" in reason
    monkeypatch.setattr(weight_files, "available_memory", lambda: 3 * size)
    assert "streamed_weights" not in torchaudit.scan(str(saved / "llama"), compare=["dtype"]).extras
    monkeypatch.setattr(weight_files, "available_memory", lambda: size)
    assert "streamed_weights" not in torchaudit.scan(str(saved / "llama"), compare=["dtype"], stream_weights=False).extras


def test_reload_is_skipped_saying_it_needs_the_weights_in_memory(saved: Path) -> None:
    report = torchaudit.scan(str(saved / "llama"), compare=["reload"], stream_weights=True)
    (result,) = report.comparisons
    assert result.status.value == "skipped"
    assert "needs the weights in memory" in (result.skipped_reason or "")


def test_a_tensor_no_file_holds_skips_the_comparison_naming_it(saved: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    weights = load_file(str(saved / "plain" / "weights.safetensors"))
    del weights["b.fc.weight"]
    save_file(weights, str(tmp_path / "partial.safetensors"))
    code, report, out = _scan(tmp_path, "partial", str(saved / "plain" / "model.py"), "--checkpoint",
                              str(tmp_path / "partial.safetensors"), "--compare", "dtype", "--stream-weights")
    (result,) = report["comparisons"]
    assert result["status"] == "skipped"
    assert "b.fc.weight" in result["skipped_reason"] and "could not be materialised" in result["skipped_reason"]
    assert "TA301" in {f["rule"] for f in report["findings"]}  # the checkpoint lacks a key the model has


@pytest.mark.parametrize("extra, expected", [
    ((), "this scan has none"),
    (("--checkpoint", "BIN"), "is not a safetensors file"),
])
def test_nothing_to_stream_is_one_line_and_exit_2(saved: Path, tmp_path: Path, extra: tuple[str, ...], expected: str) -> None:
    if "BIN" in extra:
        state = {k: v.contiguous() for k, v in _plain_state(saved).items()}
        torch.save(state, tmp_path / "w.bin")
        extra = ("--checkpoint", str(tmp_path / "w.bin"))
    result = invoke_cli("scan", str(saved / "plain" / "model.py"), *extra, "--stream-weights")
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert expected in lines[0] and "Traceback" not in result.stderr


def _plain_state(saved: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(saved / "plain" / "weights.safetensors"))


def test_the_scanned_files_and_models_are_left_as_they_were(saved: Path) -> None:
    before = {p: p.read_bytes() for p in (saved / "llama").iterdir()}
    rng = torch.random.get_rng_state()
    torchaudit.scan(str(saved / "llama"), compare=["dtype"], stream_weights=True)
    assert {p: p.read_bytes() for p in (saved / "llama").iterdir()} == before
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert torch.nn.Module.register_parameter.__qualname__ == "Module.register_parameter"  # the build's patch is undone


def test_device_logic_streamed_on_two_cpu_configurations(saved: Path, tmp_path: Path) -> None:
    """What the device comparison does on CUDA (each side places what it reads on its device),
    covered on CPU: a custom pair of two CPU configurations, streamed and in memory."""
    args = (str(saved / "llama"), "--reference", "cpu:float32", "--candidate", "cpu:bfloat16", "--compare", "dtype")
    _, memory, _ = _scan(tmp_path, "memory", *args)
    _, streamed, _ = _scan(tmp_path, "streamed", *args, "--stream-weights")
    _same_results(memory, streamed)


@pytest.mark.cuda
def test_device_comparison_streams_onto_cuda(saved: Path, tmp_path: Path) -> None:
    args = (str(saved / "llama"), "--compare", "device")
    _, memory, _ = _scan(tmp_path, "memory", *args)
    _, streamed, _ = _scan(tmp_path, "streamed", *args, "--stream-weights")
    assert _by_name(streamed)["device"]["status"] in ("matched", "diverged", "accumulated")
    _same_results(memory, streamed)


def test_diff_of_two_directories_streamed_gives_the_in_memory_results(saved: Path, tmp_path: Path) -> None:
    """A's tensors feed the reference, B's the candidate, each read as its node needs it."""
    results = {}
    for name, extra in (("memory", ()), ("streamed", ("--stream-weights",))):
        out = tmp_path / f"{name}.json"
        done = invoke_cli("diff", str(saved / "llama"), str(saved / "llama_b"), *extra, "--json", str(out))
        assert done.returncode == 0, done.stderr
        results[name] = json.loads(out.read_text())
    memory, streamed = results["memory"], results["streamed"]
    _same_results(memory, streamed)
    assert streamed["tensor_diff"] == memory["tensor_diff"]
    first = streamed["comparisons"][0]["first_divergence"]
    assert first["module"] == "model.layers.1.mlp.down_proj"  # the weight B changed
    st = streamed["streamed_weights"]
    assert [Path(p).name for p in st["checkpoints"]] == ["llama", "llama_b"] and st["bytes_read"] >= st["bytes"] // 2


def test_diff_streams_by_itself_when_both_checkpoints_exceed_half_the_memory(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    both = weight_files.checkpoint_bytes(saved / "llama") + weight_files.checkpoint_bytes(saved / "llama_b")
    monkeypatch.setattr(weight_files, "available_memory", lambda: both + 1)  # each alone would fit, both do not
    report = torchaudit.diff(str(saved / "llama"), str(saved / "llama_b"))
    assert "exceed half of the available memory" in report.extras["streamed_weights"]["reason"]
    assert report.comparisons[0].first_divergence is not None


def test_a_live_module_streams_from_its_checkpoint_and_is_left_as_it_was(saved: Path) -> None:
    """The Python API with an nn.Module: the comparison reads the checkpoint's weights into a
    skeleton of the module; the module's own parameters are neither copied nor changed."""
    namespace: dict = {}
    exec(compile(PLAIN, "plain", "exec"), namespace)
    torch.manual_seed(5)
    net = namespace["build_model"]().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    checkpoint = str(saved / "plain" / "weights.safetensors")
    inputs = (torch.randn(2, 16),)
    streamed = torchaudit.scan(net, inputs, checkpoint=checkpoint, compare=["dtype"], stream_weights=True)
    memory = torchaudit.scan(net, inputs, checkpoint=checkpoint, compare=["dtype"])
    assert streamed.extras["streamed_weights"]["checkpoints"] == [checkpoint]
    (a,), (b,) = memory.comparisons, streamed.comparisons
    assert a.to_dict()["nodes"] == b.to_dict()["nodes"] and a.status == b.status
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items()) and not net.training


def test_meta_and_static_only_never_turn_streaming_on_by_themselves(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ask for no comparison on values: a big checkpoint then stays a header, never read."""
    monkeypatch.setattr(weight_files, "available_memory", lambda: 1)
    monkeypatch.setattr(weight_files.WeightFiles, "read", lambda self, key: pytest.fail(f"read {key}"))
    for flags in ({"meta": True}, {"static_only": True}):
        report = torchaudit.scan(str(saved / "llama"), **flags)
        assert "streamed_weights" not in report.extras and not report.comparisons
