"""TA301-TA307: a firing case and a silent look-alike each, through ``torchaudit.scan``."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import save_file

import torchaudit


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.bn = nn.BatchNorm1d(8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.bn(self.fc1(x)).relu())


class HasModuleAttr(nn.Module):
    """Look-alike for TA303: its own top-level submodule is called ``module``."""

    def __init__(self) -> None:
        super().__init__()
        self.module = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def trained(model: nn.Module) -> dict[str, torch.Tensor]:
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 4) * 3 + 1)
    return {k: v.clone() for k, v in model.state_dict().items()}


def scan(model: nn.Module, state: dict, tmp_path: Path, name: str = "ckpt.pt") -> list:
    path = tmp_path / name
    if name.endswith(".safetensors"):
        save_file(state, str(path))
    else:
        torch.save(state, path)
    report = torchaudit.scan(model, torch.randn(2, 4), checkpoint=str(path), static_only=True)  # TA30x: no comparison needed
    return report.findings


def codes(findings: list, prefix: str = "TA30") -> list[tuple[str, str | None]]:
    return sorted((f.rule, f.module) for f in findings if f.rule.startswith(prefix))


def test_matching_trained_checkpoint_is_silent(tmp_path: Path) -> None:
    assert codes(scan(Net(), trained(Net()), tmp_path)) == []


def test_ta301_missing_keys(tmp_path: Path) -> None:
    state = {k: v for k, v in trained(Net()).items() if not k.startswith("fc2.")}
    findings = scan(Net(), state, tmp_path)
    assert codes(findings) == [("TA301", "fc2")]
    f = next(f for f in findings if f.rule == "TA301")
    assert f.evidence["missing_keys"] == ["fc2.weight", "fc2.bias"]


def test_ta302_unexpected_keys(tmp_path: Path) -> None:
    state = trained(Net()) | {"head.weight": torch.zeros(2, 8)}
    findings = scan(Net(), state, tmp_path)
    assert codes(findings) == [("TA302", None)]
    f = next(f for f in findings if f.rule == "TA302")
    assert f.evidence["unexpected_keys"] == ["head.weight"] and "head" in f.message


def test_ta303_module_prefix_replaces_the_flood(tmp_path: Path) -> None:
    state = {f"module.{k}": v for k, v in trained(Net()).items()}
    findings = scan(Net(), state, tmp_path)
    assert codes(findings) == [("TA303", "")]
    f = findings[[x.rule for x in findings].index("TA303")]
    assert f.evidence["prefix"] == "module." and "consume_prefix_in_state_dict_if_present" in f.fix


def test_ta303_orig_mod_from_torch_compile(tmp_path: Path) -> None:
    source = Net()
    trained(source)
    compiled = torch.compile(source)  # state_dict keys gain "_orig_mod."; nothing is compiled until called
    findings = scan(Net(), dict(compiled.state_dict()), tmp_path)
    assert codes(findings) == [("TA303", "")]
    assert next(f for f in findings if f.rule == "TA303").evidence["prefix"] == "_orig_mod."


def test_ta303_silent_for_a_model_whose_top_module_is_named_module(tmp_path: Path) -> None:
    model = HasModuleAttr()
    findings = scan(HasModuleAttr(), dict(model.state_dict()), tmp_path)
    assert codes(findings) == []


class Wrapped(nn.Module):
    """A model wrapped by another module: its keys gain ``model.``, the checkpoint's do not."""

    def __init__(self) -> None:
        super().__init__()
        self.model = Net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def test_ta303_prefix_on_the_model_side(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save(trained(Net()), path)
    report = torchaudit.scan(Wrapped(), torch.randn(2, 4), checkpoint=str(path), static_only=True)
    assert codes(report.findings) == [("TA303", "")]
    f = report.findings[[x.rule for x in report.findings].index("TA303")]
    assert (f.evidence["prefix"], f.evidence["side"]) == ("model.", "model")
    assert "model.model.load_state_dict" in f.fix
    assert report.target["checkpoint_info"]["strict_load"] == {"ok": True, "error": None, "prefix_fix": "add 'model.'"}


def test_ta304_shape_mismatch(tmp_path: Path) -> None:
    state = trained(Net()) | {"fc2.weight": torch.zeros(3, 8), "fc2.bias": torch.zeros(3)}
    findings = scan(Net(), state, tmp_path)
    assert codes(findings) == [("TA304", "fc2"), ("TA304", "fc2")]
    f = next(f for f in findings if f.rule == "TA304")
    assert (f.evidence["checkpoint_shape"], f.evidence["model_shape"]) in (([3, 8], [2, 8]), ([3], [2]))


def test_ta305_dtype_mismatch_from_the_safetensors_header(tmp_path: Path) -> None:
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in trained(Net()).items()}
    findings = scan(Net(), state, tmp_path, "model.safetensors")
    assert codes(findings) == [("TA305", "")]
    f = next(f for f in findings if f.rule == "TA305")
    assert (f.evidence["checkpoint_dtype"], f.evidence["model_dtype"]) == ("float16", "float32")
    assert len(f.evidence["keys"]) == 8  # every float tensor; num_batches_tracked stays int64


def test_ta306_fresh_batchnorm_statistics(tmp_path: Path) -> None:
    findings = scan(Net(), dict(Net().state_dict()), tmp_path)
    assert codes(findings) == [("TA306", "bn")]


def test_ta306_silent_for_trained_statistics(tmp_path: Path) -> None:
    assert "TA306" not in [f.rule for f in scan(Net(), trained(Net()), tmp_path)]


def test_ta307_nan_and_inf(tmp_path: Path) -> None:
    state = trained(Net())
    state["fc1.weight"][0, 0] = float("nan")
    state["fc1.weight"][1, 1] = float("inf")
    findings = scan(Net(), state, tmp_path, "model.safetensors")
    assert codes(findings) == [("TA307", "fc1")]
    f = next(f for f in findings if f.rule == "TA307")
    assert (f.evidence["key"], f.evidence["nan"], f.evidence["inf"]) == ("fc1.weight", 1, 1)


def test_ta307_silent_for_large_but_finite_values(tmp_path: Path) -> None:
    state = trained(Net())
    state["fc1.weight"][0, 0] = torch.finfo(torch.float32).max
    assert "TA307" not in [f.rule for f in scan(Net(), state, tmp_path)]


def ta307(findings: list) -> list:
    return [f for f in findings if f.rule == "TA307"]


def test_ta307_on_a_stride_0_view_counts_the_one_stored_nan(tmp_path: Path) -> None:
    """``torch.full((1,), nan).expand(2**30)``: a 1.6 KB file whose tensor claims 2**30 elements
    over one stored value. It holds NaN (TA307), counted as the file stores it."""
    state = {"fc1.weight": torch.full((1,), float("nan")).expand(2**30)}
    path = tmp_path / "ckpt.pt"
    torch.save(state, path)
    assert path.stat().st_size < 4096
    [f] = ta307(scan(Net(), state, tmp_path))
    assert {k: f.evidence[k] for k in ("key", "nan", "inf", "stored", "numel")} == {
        "key": "fc1.weight", "nan": 1, "inf": 0, "stored": 1, "numel": 2**30}
    assert f.message == "checkpoint tensor fc1.weight holds 1 NaN and 0 Inf of the 1 value stored for its 1073741824 elements"


def test_ta307_on_a_stride_0_view_without_a_model(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save({"w": torch.full((1,), float("nan")).expand(2**30)}, path)
    report = torchaudit.check_checkpoint(path)
    [f] = [f for f in report.findings if f.rule == "TA307"]
    assert (f.evidence["nan"], f.evidence["stored"], f.evidence["numel"]) == (1, 1, 2**30)


def test_ta307_silent_for_a_finite_stride_0_view(tmp_path: Path) -> None:
    state = trained(Net())
    state["fc1.weight"] = torch.full((1, 1), 0.5).expand(8, 4)
    state["bn.running_var"] = torch.ones(1).expand(8)
    assert ta307(scan(Net(), state, tmp_path)) == []


def test_ta307_names_every_tensor_that_views_one_storage_once(tmp_path: Path) -> None:
    state = trained(Net())
    state["fc1.weight"][0, 0] = float("inf")
    state["fc1.bias"] = state["fc1.weight"].view(-1)[:8]  # a view of the same storage: saved once, loaded shared
    [f] = ta307(scan(Net(), state, tmp_path))
    assert (f.evidence["key"], f.evidence["keys"], f.evidence["inf"], f.evidence["stored"]) == (
        "fc1.weight", ["fc1.weight", "fc1.bias"], 1, 32)
    assert "fc1.bias views the same storage" in f.message


def test_ta307_in_a_safetensors_file_says_which_tensors(tmp_path: Path, monkeypatch) -> None:
    """Adjacent tensors of one dtype are checked as one stretch of the file, a few values at a time
    here (the chunks cut across tensors): each NaN and Inf still lands on its own tensor."""
    from torchaudit.analyzer.load import stored_values

    monkeypatch.setattr(stored_values, "CHUNK", 5)
    state = {f"extra.{i}": torch.zeros(3) for i in range(6)} | {"ints": torch.zeros(4, dtype=torch.int64)}
    state["extra.1"][2] = float("nan")
    state["extra.2"][0] = float("nan")
    state["extra.2"][1] = float("-inf")
    state["extra.5"][:] = float("inf")
    found = {f.evidence["key"]: (f.evidence["nan"], f.evidence["inf"], f.evidence["numel"])
             for f in ta307(scan(Net(), {**trained(Net()), **state}, tmp_path, "model.safetensors"))}
    assert found == {"extra.1": (1, 0, 3), "extra.2": (1, 1, 3), "extra.5": (0, 3, 3)}


def test_ta306_reads_expanded_statistics_as_stored(tmp_path: Path) -> None:
    state = trained(Net())
    state["bn.running_mean"] = torch.zeros(1).expand(8)
    state["bn.running_var"] = torch.ones(1).expand(8)
    state["bn.num_batches_tracked"] = torch.tensor(0)
    assert codes(scan(Net(), state, tmp_path)) == [("TA306", "bn")]


def test_a_tensor_that_claims_more_bytes_than_the_file_holds_is_one_line(tmp_path: Path) -> None:
    """A torch.save file edited so its storage and view claim 2**30 floats (4 GiB) over 308 bytes."""
    import struct
    import zipfile

    from tests.conftest import invoke_cli

    base = tmp_path / "base.pt"
    torch.save({"fc1.weight": torch.zeros(77)}, base)
    path = tmp_path / "claims_4gb.pt"
    with zipfile.ZipFile(base) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("data.pkl"):
                assert data.count(b"KM") == 2  # BININT1 77: the storage's size and the view's
                data = data.replace(b"KM", b"J" + struct.pack("<i", 2**30))
            zout.writestr(info, data)
    model = tmp_path / "net.py"
    model.write_text("import torch.nn as nn\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                     "        self.fc1 = nn.Linear(4, 8)\n\n    def forward(self, x):\n        return self.fc1(x)\n")
    res = invoke_cli("scan", str(model), "--checkpoint", str(path), "--static-only")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr, res.stderr
    assert str(path) in res.stderr


def test_checkpoint_loads_into_a_copy_never_the_users_model(tmp_path: Path) -> None:
    state = trained(Net())
    model = Net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "ckpt.pt"
    torch.save(state, path)
    report = torchaudit.scan(model, torch.randn(2, 4), checkpoint=str(path))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(after["fc1.weight"], state["fc1.weight"])
    info = report.target["checkpoint_info"]
    assert report.target["checkpoint"] == str(path)
    assert info["strict_load"] == {"ok": True, "error": None, "prefix_fix": None}
    assert model.training  # modes untouched too


class WithExtraState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.calls = 0

    def get_extra_state(self) -> dict:
        return {"calls": self.calls}

    def set_extra_state(self, state: dict) -> None:
        self.calls = state["calls"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def test_extra_state_goes_into_the_strict_load(tmp_path: Path) -> None:
    source = WithExtraState()
    source.calls = 7
    path = tmp_path / "ckpt.pt"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    report = torchaudit.scan(WithExtraState(), torch.randn(2, 4), checkpoint=str(path), static_only=True)
    assert report.target["checkpoint_info"]["strict_load"] == {"ok": True, "error": None, "prefix_fix": "strip 'module.'"}
    assert codes(report.findings) == [("TA303", "")]


GPT2_FILE = '''import torch
from safetensors.torch import load_file
from transformers import GPT2Config, GPT2LMHeadModel

CONFIG = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=32)


def load(path):
    model = GPT2LMHeadModel(CONFIG)
    result = model.load_state_dict(load_file(path), strict=False, assign=True)
    assert not result.unexpected_keys
    return model


def build_model():
    return GPT2LMHeadModel(CONFIG).eval()


def example_inputs():
    return torch.randint(0, 100, (1, 8))
'''


def _tiny_gpt2(tmp_path: Path) -> tuple[Path, Path]:
    """A GPT-2 model file built offline from a tiny config, and its save_pretrained checkpoint,
    which keeps the tied lm_head.weight / transformer.wte.weight once."""
    from safetensors import safe_open
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=32))
    model.save_pretrained(tmp_path / "saved")
    ckpt = tmp_path / "saved" / "model.safetensors"
    with safe_open(str(ckpt), "pt") as f:
        assert "transformer.wte.weight" in f.keys() and "lm_head.weight" not in f.keys()
    source = tmp_path / "gpt2_model.py"
    source.write_text(GPT2_FILE)
    return source, ckpt


def test_a_tied_weight_stored_once_is_not_missing_and_the_strict_load_fills_it(tmp_path: Path) -> None:
    source, ckpt = _tiny_gpt2(tmp_path)
    report = torchaudit.scan(str(source), checkpoint=str(ckpt), static_only=True)
    assert "TA301" not in [f.rule for f in report.findings]
    assert report.target["checkpoint_info"]["strict_load"]["ok"] is True
    # the untied look-alike: a checkpoint that lacks a weight no other name holds is still missing it
    from safetensors.torch import load_file

    state = {k: v for k, v in load_file(str(ckpt)).items() if k != "transformer.wpe.weight"}
    save_file(state, str(tmp_path / "no_wpe.safetensors"))
    missing = torchaudit.scan(str(source), checkpoint=str(tmp_path / "no_wpe.safetensors"), static_only=True)
    assert [f.evidence["missing_keys"] for f in missing.findings if f.rule == "TA301"] == [["transformer.wpe.weight"]]


def test_ta311_assign_true_unties_the_weight_the_checkpoint_stores_once(tmp_path: Path) -> None:
    source, ckpt = _tiny_gpt2(tmp_path)
    report = torchaudit.scan(str(source), checkpoint=str(ckpt), static_only=True)
    [f] = [f for f in report.findings if f.rule == "TA311"]
    assert f.location is not None and f.location.line == 10
    assert f.evidence["not_in_checkpoint"] == ["lm_head.weight"]
    assert "lm_head.weight would keep the initial values" in f.message and "tie_weights()" in f.fix
