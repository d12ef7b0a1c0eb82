"""``torchaudit checkpoint FILE...``: a checkpoint alone, no model. Through the command line
(typer's CliRunner, in process) with real files: clean, malicious (payloads from tests/malicious.py,
whose canaries must never appear), a whole pickled module, shards, unreadable files; ``--allowlist``
is proven by running its snippet in a fresh interpreter and loading the file with weights_only=True."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from tests import malicious
from tests.conftest import invoke_cli
from tests.json_shape import check_checkpoint_schema, checkpoint_report_json
from tests.test_report_sarif import validator  # noqa: F401 - the OASIS schema fixture

CONFIG_MODULE = textwrap.dedent(
    """
    from dataclasses import dataclass

    @dataclass
    class RunConfig:
        width: int = 4
        name: str = "base"
    """
)


def _run(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture
def clean_pt(tmp_path: Path) -> Path:
    path = tmp_path / "clean.pt"
    torch.save({"state_dict": {"fc.weight": torch.ones(4, 3), "fc.bias": torch.zeros(4), "steps": torch.tensor(3)}}, path)
    return path


@pytest.fixture
def clean_safetensors(tmp_path: Path) -> Path:
    from safetensors.torch import save_file

    path = tmp_path / "clean.safetensors"
    save_file({"fc.weight": torch.ones(4, 3), "emb": torch.ones(10, 2, dtype=torch.bfloat16), "ids": torch.arange(5)}, str(path))
    return path


@pytest.fixture
def config_module(tmp_path: Path) -> Path:
    """A folder holding runconfig.py (a dataclass): importable where it is on sys.path."""
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "runconfig.py").write_text(CONFIG_MODULE)
    return folder


def _save_with_config(folder: Path, path: Path) -> None:
    """A checkpoint whose pickle holds a RunConfig instance, saved in a fresh interpreter."""
    done = _run("import sys, torch; sys.path.insert(0, sys.argv[1]); from runconfig import RunConfig; "
                "torch.save({'state_dict': {'w': torch.ones(2, 2)}, 'config': RunConfig(8, 'big')}, sys.argv[2])",
                str(folder), str(path))
    assert done.returncode == 0, done.stderr


def test_clean_safetensors_and_pt_pass_and_list_their_tensors(clean_safetensors: Path, clean_pt: Path) -> None:
    res = invoke_cli("checkpoint", str(clean_safetensors), str(clean_pt))
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "safetensors (holds no code)" in out and "3: bfloat16 \u00d71, float32 \u00d71, int64 \u00d71" in out
    assert "parameters   32 (values in floating-point tensors)" in out  # 12 + 20 floating values; the int64 ids are not
    assert "torch.save zip" in out and "wrapper key  'state_dict'" in out and "3: float32 \u00d72, int64 \u00d71" in out
    assert "collections.OrderedDict" in out and "allowlisted" in out and "DANGEROUS" not in out
    assert "torch.load(weights_only=True) loads it: every global it imports is allowlisted" in out
    assert "2 files: 6 tensors, 48 parameters" in out
    assert out.rstrip().endswith("PASS: 0 errors, 0 warnings, 0 infos (fail on error)")
    assert res.stderr == ""


@pytest.mark.parametrize("kind", sorted(malicious.BUILDERS))
def test_malicious_file_fails_names_its_global_and_never_runs(kind: str, tmp_path: Path) -> None:
    canary, evil = tmp_path / "canary", tmp_path / "evil.pt"
    expected = malicious.BUILDERS[kind](evil, canary)
    report = tmp_path / "r.json"
    res = invoke_cli("checkpoint", str(evil), "--json", str(report))
    assert res.returncode == 1, res.stdout + res.stderr
    assert not canary.exists(), "the payload ran"
    assert f"{expected}" in res.stdout and "DANGEROUS (" in res.stdout and "verdict      DANGEROUS" in res.stdout
    data = json.loads(report.read_text())
    check_checkpoint_schema(data)
    assert any(f["rule"] == "TA601" and f["evidence"]["global"] == expected for f in data["findings"])
    [entry] = data["checkpoint_files"]
    assert entry["verdict"] == "dangerous" and entry["tensors"] is None
    assert {g["name"]: g["status"] for g in entry["imports"]}[expected] == "dangerous"


def test_whole_pickled_module_is_ta310_a_warning_and_not_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(nn.Sequential(nn.Linear(2, 2)), path)
    res = invoke_cli("checkpoint", str(path))
    assert res.returncode == 0, res.stdout + res.stderr  # TA310 is a warning: the default gate passes
    assert "TA310" in res.stdout and "TA601" not in res.stdout
    assert "torch.nn.modules.linear.Linear" in res.stdout and "outside the allowlist: an nn.Module class" in res.stdout
    assert "tensors      not unpickled: it is a whole pickled module" in res.stdout
    assert invoke_cli("checkpoint", str(path), "--fail-on", "warning").returncode == 1


def test_allowlist_snippet_lets_weights_only_load_the_file(tmp_path: Path, config_module: Path) -> None:
    ckpt = tmp_path / "with_config.pt"
    _save_with_config(config_module, ckpt)
    load = "import sys, torch; sys.path.insert(0, sys.argv[1]); {}; print(torch.load(sys.argv[2], weights_only=True)['config'])"
    refused = _run(load.format("pass"), str(config_module), str(ckpt))
    assert refused.returncode != 0 and "Weights only load failed" in refused.stderr  # the test proves something

    res = invoke_cli("checkpoint", str(ckpt), "--allowlist")
    assert res.returncode == 1  # outside the allowlist is TA601, an error, until the user allows it
    snippet = res.stdout  # the snippet alone: blocks and summary went to stderr
    assert "runconfig.RunConfig" in res.stderr and "outside the allowlist" in res.stderr
    assert "import runconfig" in snippet and "torch.serialization.add_safe_globals([\n    runconfig.RunConfig,\n])" in snippet
    (tmp_path / "allow.py").write_text(snippet)
    loaded = _run(load.format("exec(open(sys.argv[3]).read())"), str(config_module), str(ckpt), str(tmp_path / "allow.py"))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "RunConfig(width=8, name='big')"


def test_allowlist_never_allows_a_dangerous_file_nor_main_nor_non_names(tmp_path: Path, config_module: Path) -> None:
    evil = tmp_path / "evil.pt"
    malicious.zip_os_system(evil, tmp_path / "canary")
    script = tmp_path / "train.py"  # a class defined in the script that saves: __main__.Local
    script.write_text("import sys, torch\nclass Local:\n    pass\ntorch.save({'w': torch.ones(1), 'x': Local()}, sys.argv[1])\n")
    main_ckpt = tmp_path / "main.pt"
    assert subprocess.run([sys.executable, str(script), str(main_ckpt)], capture_output=True, timeout=120).returncode == 0
    crafted = tmp_path / "crafted.pkl"  # STACK_GLOBAL names that are code, not Python names
    crafted.write_bytes(_stack_global("x\nimport os; os.system('true')\n#", "y"))
    ok = tmp_path / "ok.pt"
    _save_with_config(config_module, ok)

    res = invoke_cli("checkpoint", str(evil), str(main_ckpt), str(crafted), str(ok), "--allowlist")
    assert res.returncode == 1 and not (tmp_path / "canary").exists()
    snippet = res.stdout
    code_lines = [line for line in snippet.splitlines() if line and not line.startswith("#")]
    assert code_lines == ["import runconfig", "import torch", "torch.serialization.add_safe_globals([", "    runconfig.RunConfig,", "])"]
    assert f"{evil.name}: imports posix.system: do not load it" in snippet.replace(str(tmp_path) + "/", "")
    assert "__main__.Local: defined in the script that saved the file (__main__), so it cannot be imported" in snippet
    assert "not a Python name: nothing can import it" in snippet and r"x\nimport os" in snippet
    compile(snippet, "allow.py", "exec")  # the comments keep it one valid program


def _stack_global(module: str, name: str) -> bytes:
    """A protocol 4 pickle that imports ``module.name`` with STACK_GLOBAL (any strings at all)."""

    def s(text: str) -> bytes:
        data = text.encode()
        return b"\x8c" + bytes([len(data)]) + data  # SHORT_BINUNICODE

    return b"\x80\x04" + s(module) + s(name) + b"\x93."


def test_directory_of_shards_checks_every_checkpoint_file_in_it(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    shards = tmp_path / "model"
    shards.mkdir()
    save_file({"a.weight": torch.ones(2, 2)}, str(shards / "model-00001-of-00002.safetensors"))
    save_file({"b.weight": torch.ones(3, 2, dtype=torch.float16)}, str(shards / "model-00002-of-00002.safetensors"))
    (shards / "model.safetensors.index.json").write_text("{}")
    (shards / "config.json").write_text("{}")
    report = tmp_path / "r.json"
    res = invoke_cli("checkpoint", str(shards), "--json", str(report))
    assert res.returncode == 0, res.stdout + res.stderr
    first, second = res.stdout.index("model-00001-of-00002"), res.stdout.index("model-00002-of-00002")
    assert first < second and "2 files: 2 tensors, 10 parameters" in res.stdout
    data = json.loads(report.read_text())
    check_checkpoint_schema(data)
    assert [Path(f["path"]).name for f in data["checkpoint_files"]] == ["model-00001-of-00002.safetensors",
                                                                         "model-00002-of-00002.safetensors"]
    assert data["checkpoint_files"][1]["dtypes"] == {"float16": 1}

    empty = tmp_path / "empty"
    empty.mkdir()
    res = invoke_cli("checkpoint", str(empty))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"torchaudit: error: {empty} is a directory without a checkpoint file (.safetensors, .bin, .pt, .pth, .ckpt). "
        "pass a checkpoint file, or a folder that holds some."
    ]


def test_unreadable_files_say_one_line_each_and_the_others_are_checked(tmp_path: Path, clean_pt: Path, validator) -> None:  # noqa: F811
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(clean_pt.read_bytes()[:200])
    text = tmp_path / "notes.pt"
    text.write_text("just some notes\n")
    evil = tmp_path / "evil.pt"
    malicious.zip_os_system(evil, tmp_path / "canary")
    sarif, report = tmp_path / "r.sarif", tmp_path / "r.json"
    res = invoke_cli("checkpoint", str(truncated), str(clean_pt), str(tmp_path / "missing.pt"), str(evil), str(text),
                     "--json", str(report), "--sarif", str(sarif))
    assert res.returncode == 2  # the worst wins: unreadable (2) over the failed gate (1)
    errors = res.stderr.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("torchaudit: error: ") for line in errors), res.stderr
    assert "truncated.pt is a truncated or damaged" in errors[0] and "checkpoint not found" in errors[1]
    assert "notes.pt is a text file, not a checkpoint" in errors[2]
    assert "Traceback" not in res.stdout + res.stderr
    assert "clean.pt" in res.stdout and "verdict      DANGEROUS" in res.stdout and "TA601" in res.stdout
    data = json.loads(report.read_text())
    check_checkpoint_schema(data)
    assert [f["verdict"] for f in data["checkpoint_files"]] == ["unreadable", "loads", "unreadable", "dangerous", "unreadable"]
    doc = json.loads(sarif.read_text())
    validator.validate(doc)
    invocation = doc["runs"][0]["invocations"][0]
    assert invocation["exitCode"] == 2 and invocation["executionSuccessful"] is False
    assert len(invocation["toolExecutionNotifications"]) == 3
    assert [r["ruleId"] for r in doc["runs"][0]["results"]] == ["TA601"]


@pytest.mark.parametrize("make", ["missing", "text", "truncated"])
def test_one_bad_file_is_one_line_and_exit_2(make: str, tmp_path: Path, clean_safetensors: Path) -> None:
    path = tmp_path / "bad.safetensors"
    if make == "text":
        path.write_text("hello")
    elif make == "truncated":
        path.write_bytes(clean_safetensors.read_bytes()[:-10])
    res = invoke_cli("checkpoint", str(path))
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("torchaudit: error: "), res.stderr
    assert "Traceback" not in res.stderr


def test_json_and_sarif_reports_are_valid(tmp_path: Path, clean_safetensors: Path, validator) -> None:  # noqa: F811
    evil = tmp_path / "evil.pt"
    malicious.raw_exec(evil, tmp_path / "canary")
    out = {fmt: tmp_path / f"r.{fmt}" for fmt in ("json", "sarif", "md", "html")}
    res = invoke_cli("checkpoint", str(clean_safetensors), str(evil), "--json", str(out["json"]), "--sarif", str(out["sarif"]),
                     "--markdown", str(out["md"]), "--html", str(out["html"]))
    assert res.returncode == 1, res.stderr
    data = json.loads(out["json"].read_text())
    check_checkpoint_schema(data)
    assert data["summary"]["verdict"] == "fail" and data["target"]["spec"].endswith("evil.pt")
    clean, dangerous = data["checkpoint_files"]
    assert clean["format"] == "safetensors" and clean["tensors"] == 3 and clean["parameters"] == 32 and clean["imports"] == []
    assert dangerous["format"] == "pickle" and dangerous["verdict"] == "dangerous"
    doc = json.loads(out["sarif"].read_text())
    validator.validate(doc)
    [result] = doc["runs"][0]["results"]
    assert result["ruleId"] == "TA601" and result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("evil.pt")
    assert doc["runs"][0]["invocations"][0]["exitCode"] == 1
    assert "torchaudit checkpoint" in out["md"].read_text() and "TA601" in out["html"].read_text()


def test_output_format_json_prints_the_report_alone(tmp_path: Path, clean_pt: Path) -> None:
    res = invoke_cli("checkpoint", str(clean_pt), "--output-format", "json")
    assert res.returncode == 0
    check_checkpoint_schema(json.loads(res.stdout))
    both = invoke_cli("checkpoint", str(clean_pt), "--allowlist", "--json", "-")
    assert both.returncode == 2 and "both write to stdout" in both.stderr


def test_select_and_ignore_work_as_in_scan(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    malicious.zip_os_system(evil, tmp_path / "canary")
    module = tmp_path / "model.pt"
    torch.save(nn.Linear(2, 2), module)
    ignored = invoke_cli("checkpoint", str(evil), "--ignore", "TA601")
    assert ignored.returncode == 0 and "  TA601  " not in ignored.stdout and "errors (" not in ignored.stdout
    assert "verdict      DANGEROUS" in ignored.stdout  # the facts stay; the gate is the user's to set
    only = invoke_cli("checkpoint", str(evil), str(module), "--select", "TA310")
    assert only.returncode == 0 and "  TA310  " in only.stdout and "  TA601  " not in only.stdout
    model_rules = invoke_cli("checkpoint", str(module), "--select", "TA301,TA310")
    assert "TA301: needs a model: torchaudit scan MODEL --checkpoint FILE runs it" in model_rules.stdout
    unknown = invoke_cli("checkpoint", str(module), "--select", "TA999")
    assert unknown.returncode == 2 and "matches no rule" in unknown.stderr


def test_settings_come_from_the_working_directorys_pyproject(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    malicious.zip_os_system(evil, tmp_path / "canary")
    (tmp_path / "pyproject.toml").write_text('[tool.torchaudit]\nfail-on = "never"\n')
    res = invoke_cli("checkpoint", "evil.pt", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.startswith("config: pyproject.toml") and "(fail on never)" in res.stdout
    assert invoke_cli("checkpoint", "evil.pt", "--isolated", cwd=tmp_path).returncode == 1


def test_global_names_with_terminal_escapes_or_markup_are_printed_as_text(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    evil.write_bytes(b"cos\nsystem\x1b[1A\x1b[2K\x1b[32mPASS\x1b[0m\n(S'true'\ntR.")
    marked = tmp_path / "marked.pt"  # rich markup in a name must print as the characters it is
    marked.write_bytes(b"cmod[bold]x\nfn[/bold]\n(S'true'\ntR.")
    res = invoke_cli("checkpoint", str(evil), str(marked), "--allowlist")
    assert res.returncode == 1
    assert "\x1b" not in res.stdout + res.stderr
    assert r"os.system\x1b[1A\x1b[2K\x1b[32mPASS\x1b[0m" in res.stderr
    assert "mod[bold]x.fn[/bold]  outside the allowlist" in res.stderr
    assert "#   mod[bold]x.fn[/bold]: not a Python name" in res.stdout


def test_python_api(clean_safetensors: Path) -> None:
    import torchaudit

    report = torchaudit.check_checkpoint(clean_safetensors.parent)  # the folder: every checkpoint file in it
    data = checkpoint_report_json(report)
    assert report.exit_code == 0 and [f["path"] for f in data["checkpoint_files"]] == [str(clean_safetensors)]
    assert torchaudit.check_checkpoint(str(clean_safetensors.parent / "nope.pt")).exit_code == 2


def test_the_rules_it_runs_never_read_the_model(tmp_path: Path, clean_pt: Path) -> None:
    """The rules `torchaudit checkpoint` runs are picked by what they declare they read; this
    holds them to it: on a model that refuses to be read, none of them raises (TA902)."""
    from torchaudit.analyzer.context import AuditContext
    from torchaudit.analyzer.environment import environment
    from torchaudit.analyzer.load.checkpoint import load_checkpoint
    from torchaudit.checkpoint_check import rule_codes
    from torchaudit.rules.engine import run_rules

    class Unreadable(nn.Module):
        def _refuse(self, *args: object, **kwargs: object):
            raise AssertionError("a rule of torchaudit checkpoint read the model")

        named_modules = state_dict = named_parameters = named_buffers = _refuse

    codes, _ = rule_codes([], [])
    assert {"TA307", "TA310", "TA601", "TA604", "TA902"} <= set(codes)
    assert not set(codes) & {"TA301", "TA302", "TA303", "TA304", "TA305", "TA306"}
    evil, module = tmp_path / "evil.pt", tmp_path / "module.pt"
    malicious.zip_os_system(evil, tmp_path / "canary")
    torch.save(nn.Linear(2, 2), module)
    nan = tmp_path / "nan.pt"
    torch.save({"w": torch.tensor([float("nan"), 1.0])}, nan)

    def rules_on(path: Path, select: list[str]) -> list[str]:
        ctx = AuditContext(model=Unreadable(), target=None, inputs=None, graph=None, environment=environment(),
                           checkpoint=load_checkpoint(path))
        return [f.rule for f in run_rules(ctx, select=select)[0]]

    assert rules_on(clean_pt, ["TA301", "TA902"]) == ["TA902"]  # the guard works: a rule that reads the model raises
    assert rules_on(clean_pt, codes) == [] and rules_on(nan, codes) == ["TA307"]
    assert set(rules_on(evil, codes)) == {"TA601"} and set(rules_on(module, codes)) == {"TA310"}
