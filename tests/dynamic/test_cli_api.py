"""The command line (scan options, diff) and the Python API (compare, assert_consistent)."""

import copy
import json

import pytest
import torch

import torchaudit
from tests.conftest import invoke_cli
from tests.dynamic import models as M

MODELS = "tests/dynamic/models.py"


def test_scan_compare_determinism_names_the_dropout_line(tmp_path):
    out = tmp_path / "r.json"
    res = invoke_cli("scan", "examples/mlp_bn_dropout.py", "--compare", "determinism", "--json", str(out))
    assert res.returncode == 1, res.stderr
    data = json.loads(out.read_text())
    [c] = data["comparisons"]
    assert c["name"] == "determinism" and c["status"] == "diverged"
    assert c["first_divergence"]["node"] == "dropout" and c["first_divergence"]["location"]["line"] == 18
    assert c["tolerance"] == {"atol": 1e-05, "rtol": 1.3e-06}
    assert {"local_max_abs", "max_abs", "cosine", "mismatch_fraction", "diverged"} <= set(c["nodes"][0])
    [f] = [f for f in data["findings"] if f["rule"] == "TA702"]
    assert f["location"]["line"] == 18
    assert "compare determinism: diverged at dropout" in res.stdout


def test_scan_static_only_and_auto(tmp_path):
    out = tmp_path / "r.json"
    res = invoke_cli("scan", "examples/transformer_block.py", "--static-only", "--json", str(out))
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text())["comparisons"] == []
    res = invoke_cli("scan", "examples/transformer_block.py", "--json", str(out))
    data = json.loads(out.read_text())
    names = {c["name"]: c["status"] for c in data["comparisons"]}
    assert names["dtype"] == "matched" and names["reload"] == "matched" and names["batch"] == "matched"
    device = next(c for c in data["comparisons"] if c["name"] == "device")
    if torch.cuda.is_available():  # it ran: CPU against CUDA (test_device_comparison_on_cuda checks its numbers)
        assert device["status"] in ("matched", "diverged") and device["candidate"]["device"].startswith("cuda"), device
    else:  # auto skips it, and says why
        assert device["status"] == "skipped" and "CUDA" in device["skipped_reason"], device
    assert names["mode"] == "diverged"  # dropout layers: expected, info only
    assert res.returncode == 0


def test_scan_custom_reference_candidate(tmp_path):
    out = tmp_path / "r.json"
    res = invoke_cli("scan", "examples/transformer_block.py", "--reference", "cpu:float64", "--candidate", "cpu:float32:eval",
                  "--compare", "dtype", "--json", str(out))
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    custom = [c for c in data["comparisons"] if c["name"] == "custom"][0]
    assert custom["reference"] == {"device": "cpu", "dtype": "float64", "mode": "eval"}
    assert custom["status"] == "matched"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--reference", "gpu:float32"], "--reference"),
        (["--reference", "cpu:float33", "--candidate", "cpu:float32"], "float33"),
        (["--compare", "speed"], "speed"),
        (["--reference", "cpu:float64"], "--candidate"),
    ],
)
def test_bad_comparison_options_exit_2_with_one_line(args, words):
    res = invoke_cli("scan", "examples/transformer_block.py", *args)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and words in res.stderr and "Traceback" not in res.stderr


def test_no_inputs_every_comparison_skipped_with_flag(tmp_path):
    model = tmp_path / "m.py"
    model.write_text("import torch.nn as nn\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                     "        self.fc = nn.Linear(4, 2)\n\n    def forward(self, x):\n        return self.fc(x)\n")
    out = tmp_path / "r.json"
    res = invoke_cli("scan", str(model), "--json", str(out))
    assert res.returncode == 0, res.stderr
    for c in json.loads(out.read_text())["comparisons"]:
        assert c["status"] == "skipped" and "--input-shape" in c["skipped_reason"]


def _write_pair(model, key, change, tmp_path):
    sd = model.state_dict()
    torch.save(sd, tmp_path / "a.pt")
    sd2 = {k: v.clone() for k, v in sd.items()}
    sd2[key] = change(sd2[key])
    torch.save(sd2, tmp_path / "b.pt")
    return str(tmp_path / "a.pt"), str(tmp_path / "b.pt")


@pytest.mark.parametrize(
    "name, shape, key, module",
    [
        ("SmallCNN", "2,3,8,8", "body.1.running_var", "body.1"),
        ("SmallCNN", "2,3,8,8", "body.4.running_var", "body.4"),
        ("SmallCNN", "2,3,8,8", "head.weight", "head"),
        ("SmallTransformer", "2,16,8", "norm1.weight", "norm1"),
        ("SmallTransformer", "2,16,8", "norm2.weight", "norm2"),
        ("SmallTransformer", "2,16,8", "mlp.2.weight", "mlp.2"),
    ],
)
def test_diff_pins_exactly_the_perturbed_module(name, shape, key, module, tmp_path):
    torch.manual_seed(0)
    model = getattr(M, name)()
    a, b = _write_pair(model, key, lambda t: t * 3.0 + 0.1, tmp_path)
    out = tmp_path / "d.json"
    res = invoke_cli("diff", f"{MODELS}:{name}", a, b, "--input-shape", shape, "--json", str(out))
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    [c] = data["comparisons"]
    assert c["name"] == "checkpoints" and c["status"] == "diverged"
    assert c["first_divergence"]["module"] == module
    changed = [r for r in data["tensor_diff"] if r["status"] != "unchanged"]
    assert [r["key"] for r in changed] == [key] and changed[0]["max_abs"] > 0
    assert key in res.stdout and "compare checkpoints: diverged" in res.stdout


def test_diff_lists_keys_only_in_one_side_and_refuses_unsafe_pickles(tmp_path):
    from torchaudit.analyzer.compare.diff import tensor_diff

    rows = tensor_diff({"a": torch.ones(2), "b": torch.ones(3)}, {"b": torch.ones(3) * 2, "c": torch.zeros(1)})
    assert [(r.key, r.status) for r in rows] == [("a", "only_in_a"), ("b", "changed"), ("c", "only_in_b")]
    assert rows[1].max_abs == 1.0 and rows[1].max_rel == 1.0
    bad = tmp_path / "bad.pt"
    torch.save(M.LinearBN(), bad)  # a whole pickled module: never unpickled without --trust-checkpoint
    good = tmp_path / "good.pt"
    torch.save(M.LinearBN().state_dict(), good)
    res = invoke_cli("diff", f"{MODELS}:LinearBN", str(good), str(bad), "--input-shape", "4,6")
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stderr.count("\n") == 1


def test_diff_with_a_checkpoint_of_another_model_fails_like_scan(tmp_path):
    good, other = tmp_path / "good.pt", tmp_path / "other_model.pt"
    torch.save(M.LinearBN().state_dict(), good)
    torch.save(M.SmallCNN().state_dict(), other)
    res = invoke_cli("diff", f"{MODELS}:LinearBN", str(good), str(other), "--input-shape", "4,6")
    assert res.returncode == 1, res.stderr
    assert "TA301" in res.stdout and "checkpoint B: the checkpoint has no" in res.stdout and "FAIL" in res.stdout
    assert "compare checkpoints: skipped" in res.stdout


def test_compare_api_trained_against_reloaded():
    torch.manual_seed(0)
    trained = M.PythonCounter().train()
    for _ in range(3):
        trained(torch.randn(4, 6))
    trained.eval()
    reloaded = M.PythonCounter()
    reloaded.load_state_dict(trained.state_dict())
    reloaded.eval()
    x = torch.randn(4, 6)
    result = torchaudit.compare(trained, reloaded, x)
    assert result.status.value == "diverged" and result.first_divergence.module == "head"
    assert [d.name for d in result.state_diff] == ["head.calls"]
    assert trained.head.calls == 3 and reloaded.head.calls == 0 and not trained.training
    with pytest.raises(AssertionError) as err:
        torchaudit.assert_consistent(trained, reloaded, x)
    msg = str(err.value)
    assert "'mul'" in msg and "head" in msg and "models.py:" in msg and "head.calls" in msg
    same = copy.deepcopy(trained)
    assert torchaudit.assert_consistent(trained, same, x).status.value == "matched"


def test_compare_api_float64_against_float16_arbitrates():
    torch.manual_seed(0)
    model = M.SmallTransformer().eval()
    result = torchaudit.compare(model.double(), copy.deepcopy(model).float(), torch.randn(2, 16, 8))
    assert result.status.value == "matched"
    assert result.reference.dtype == "float64" and result.candidate.dtype == "float32"


@pytest.mark.cuda
def test_device_comparison_on_cuda():
    torch.manual_seed(0)
    model = M.SmallCNN().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = torchaudit.scan(model, example_inputs=torch.randn(2, 3, 8, 8), compare=["device"])
    [c] = report.comparisons
    assert c.status.value in ("matched", "diverged") and c.candidate.device == "cuda"
    assert len(c.nodes) > 5 and c.output["cosine"] > 0.9999
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.device.type == "cpu" for p in model.parameters())
