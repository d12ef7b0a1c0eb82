"""TA601 and TA310 through the command line (typer's CliRunner, in process), with real malicious
files built here; each payload is proven real by unpickling it in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import malicious
from tests.conftest import invoke_cli

MODEL = textwrap.dedent(
    """
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x)
    """
)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "net.py"
    path.write_text(MODEL)
    return path


@pytest.mark.slow  # unpickles each payload in a fresh interpreter
@pytest.mark.parametrize("kind", sorted(malicious.BUILDERS))
def test_payloads_are_real(kind: str, tmp_path: Path) -> None:
    """Unpickled without protection, each file really creates its canary."""
    proof = tmp_path / "proof"
    evil = tmp_path / "evil.pt"
    malicious.BUILDERS[kind](evil, proof)
    loader = {
        "pickle": "import pickle,sys; pickle.load(open(sys.argv[1],'rb'))",
        "torch": "import torch,sys; torch.load(sys.argv[1], weights_only=False)",
    }[malicious.LOADERS[kind]]
    subprocess.run([sys.executable, "-c", loader, str(evil)], capture_output=True, timeout=120, cwd=tmp_path,
                   stdin=subprocess.DEVNULL)
    assert proof.exists(), f"the {kind} payload did not run when unpickled: the test would prove nothing"


@pytest.mark.parametrize("kind", sorted(malicious.BUILDERS))
def test_malicious_checkpoint_is_reported_and_never_run(kind: str, tmp_path: Path, model_file: Path) -> None:
    canary = tmp_path / "canary"
    evil = tmp_path / "evil.pt"
    expected = malicious.BUILDERS[kind](evil, canary)
    report = tmp_path / "r.json"
    res = invoke_cli("scan", str(model_file), "--checkpoint", str(evil), "--json", str(report))
    assert not canary.exists(), f"{kind}: the payload ran"
    assert res.returncode == 1, res.stderr  # TA601 is an error: the gate fails, the scan ran
    data = json.loads(report.read_text())
    ta601 = [f for f in data["findings"] if f["rule"] == "TA601"]
    named = {f["evidence"]["global"]: f for f in ta601}
    assert expected in named, f"{kind}: TA601 named {sorted(named)}"
    assert named[expected]["evidence"]["dangerous"] is True
    assert expected in named[expected]["message"] and "dangerous" in named[expected]["message"]
    assert "TA601" in res.stdout and expected in res.stdout
    info = data["target"]["checkpoint_info"]
    assert info["unpickled"] is False and info["strict_load"]["ok"] is False
    assert not any(f["rule"] in ("TA301", "TA302") for f in data["findings"])  # unknown structure: no flood


def test_stack_global_through_memo_is_resolved(tmp_path: Path) -> None:
    from torchaudit.analyzer.load.checkpoint import load_checkpoint

    evil = tmp_path / "evil.pkl"
    malicious.importlib_indirection(evil, tmp_path / "canary")
    names = {g.name: g.dangerous for g in load_checkpoint(evil).unsafe_globals}
    assert names == {"builtins.getattr": True, "importlib.import_module": True}


def test_computed_stack_global_is_unresolved_and_dangerous(tmp_path: Path) -> None:
    """STACK_GLOBAL whose module name is built at load time (here by REDUCE) cannot be checked."""
    from torchaudit.analyzer.load.checkpoint import load_checkpoint

    def s(text: str) -> bytes:
        return b"\x8c" + bytes([len(text)]) + text.encode()

    # builtins.str('os') pushes a computed (non-constant) string before STACK_GLOBAL
    body = s("builtins") + s("str") + b"\x93" + s("os") + b"\x85R" + s("system") + b"\x93" + s("true") + b"\x85R."
    evil = tmp_path / "computed.pkl"
    evil.write_bytes(b"\x80\x04" + body)
    found = {g.name: g for g in load_checkpoint(evil).unsafe_globals}
    assert "<unresolved STACK_GLOBAL>" in found and found["<unresolved STACK_GLOBAL>"].dangerous
    assert "builtins.str" in found  # outside the allowlist too, though harmless on its own


def test_zip_scan_agrees_with_torchs_own_lister(tmp_path: Path) -> None:
    """torch.serialization.get_unsafe_globals_in_checkpoint reads GLOBAL opcodes of zip files."""
    import torch

    from torchaudit.analyzer.load.checkpoint import load_checkpoint

    evil = tmp_path / "evil.pt"
    malicious.zip_os_system(evil, tmp_path / "canary")
    ours = {g.name for g in load_checkpoint(evil).unsafe_globals}
    assert ours == set(torch.serialization.get_unsafe_globals_in_checkpoint(str(evil)))
    assert not (tmp_path / "canary").exists()


def _save_pickled_module(model_file: Path, out: Path) -> None:
    """torch.save of a whole ``Net``, pickled by reference as ``net.Net``: the model file's module,
    imported here only for the save and then forgotten, as if another process had written it."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("net", model_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("net")
    sys.modules["net"] = module
    try:
        spec.loader.exec_module(module)
        torch.save(module.Net(), out)
    finally:
        if saved is None:
            sys.modules.pop("net", None)
        else:
            sys.modules["net"] = saved


def test_pickled_module_is_ta310_and_not_loaded_without_trust(tmp_path: Path, model_file: Path) -> None:
    ckpt = tmp_path / "whole.pt"
    _save_pickled_module(model_file, ckpt)
    report = tmp_path / "r.json"
    res = invoke_cli("scan", str(model_file), "--checkpoint", str(ckpt), "--json", str(report))
    assert res.returncode == 0, res.stderr  # TA310 is a warning
    data = json.loads(report.read_text())
    rules = [f["rule"] for f in data["findings"]]
    assert "TA310" in rules and "TA601" not in rules
    ta310 = next(f for f in data["findings"] if f["rule"] == "TA310")
    assert "net.Net" in ta310["evidence"]["classes"] and "not unpickled" in ta310["message"]
    assert "whole pickled module" in res.stdout
    assert data["target"]["checkpoint_info"]["unpickled"] is False


def test_trust_checkpoint_loads_a_pickled_module(tmp_path: Path, model_file: Path) -> None:
    ckpt = tmp_path / "whole.pt"
    _save_pickled_module(model_file, ckpt)
    report = tmp_path / "r.json"
    res = invoke_cli("scan", str(model_file), "--checkpoint", str(ckpt), "--trust-checkpoint", "--json", str(report))
    assert res.returncode == 0, res.stderr
    data = json.loads(report.read_text())
    ta310 = next(f for f in data["findings"] if f["rule"] == "TA310")
    assert ta310["evidence"]["trusted"] is True and "--trust-checkpoint" in ta310["message"]
    info = data["target"]["checkpoint_info"]
    assert info["trusted"] is True and info["unpickled"] is True and info["pickled_module"] is True
    assert info["strict_load"] == {"ok": True, "error": None, "prefix_fix": None}
    assert info["tensors"] == 2


def test_a_global_name_with_terminal_escapes_is_printed_escaped_in_every_report(tmp_path: Path, model_file: Path) -> None:
    """A global whose name carries ANSI escapes (cursor up, erase line, a green "PASS") must not
    repaint the terminal or a report: every string from a file is printed with its control
    characters escaped."""
    name = "system\x1b[1A\x1b[2K\x1b[32mPASS\x1b[0m"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(b"cos\n" + name.encode() + b"\n(S'true'\ntR.")
    out = {fmt: tmp_path / f"r.{fmt}" for fmt in ("json", "html", "md", "sarif")}
    res = invoke_cli("scan", str(model_file), "--checkpoint", str(evil), "--json", str(out["json"]), "--html",
                     str(out["html"]), "--markdown", str(out["md"]), "--sarif", str(out["sarif"]))
    assert res.returncode == 1, res.stderr
    assert "\x1b" not in res.stdout and "\x1b" not in res.stderr
    assert r"os.system\x1b[1A\x1b[2K\x1b[32mPASS\x1b[0m" in res.stdout
    for path in out.values():
        assert "\x1b" not in path.read_text(encoding="utf-8") and "\\u001b" not in path.read_text(encoding="utf-8")
    [ta601] = [f for f in json.loads(out["json"].read_text())["findings"] if f["rule"] == "TA601"]
    assert ta601["evidence"]["global"] == r"os.system\x1b[1A\x1b[2K\x1b[32mPASS\x1b[0m"


def test_printable_escapes_controls_and_surrogates_and_cuts_long_strings() -> None:
    from torchaudit.report import printable

    assert printable("fc.weight") == "fc.weight"
    assert printable("a\x1b[2Kb\ud800c") == r"a\x1b[2Kb\ud800c"
    long = printable("k" * 20_000_000)  # a 20 MB dict key
    assert len(long) < 2100 and long.endswith("(19,998,000 more characters)")
