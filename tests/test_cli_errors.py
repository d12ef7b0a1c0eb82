"""Bad input: exit 2 and one line on stderr naming the problem and the fix, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT, run_cli

MODELS = FIXTURES / "models"
# a fresh interpreter per command line (each imports torch): end to end, so marked slow; the loaders
# behind most of these errors are tested in process by tests/test_target.py and tests/test_inputs.py
slow = pytest.mark.slow


def assert_user_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    line = lines[0]
    assert line.startswith("torchaudit: error: ")
    for needle in needles:
        assert needle in line, line
    return line


BROKEN = "import torch\n\ndef build_model(:\n    pass\n"
NEEDS_DEP = "import torch\nimport ta_not_installed_anywhere\n"
LOCKED = (
    "import threading\nimport torch.nn as nn\n\nclass Locked(nn.Module):\n    def __init__(self):\n"
    "        super().__init__()\n        self.fc = nn.Linear(2, 2)\n        self.lock = threading.Lock()\n\n"
    "    def forward(self, x):\n        return self.fc(x)\n"
)


def _cases(tmp: Path) -> dict[str, list[str]]:
    return {
        "missing": ["scan", "no/such/model.py"],
        "syntax": ["scan", str(tmp / "broken.py")],
        "import": ["scan", str(tmp / "needs_dep.py")],
        "no_model": ["scan", str(MODELS / "no_model.py")],
        "several": ["scan", str(MODELS / "several.py")],
        "raises": ["scan", str(MODELS / "factory_raises.py")],
        "not_module": ["scan", str(MODELS / "factory_not_module.py")],
        "forward": ["scan", str(MODELS / "wrong_inputs.py")],
        "shape_forward": ["scan", str(MODELS / "mlp_dropout.py"), "--input-shape", "4,3"],
        "shape_8,x": ["scan", str(MODELS / "mlp_dropout.py"), "--input-shape", "8,x"],
        "shape_8,128:float99": ["scan", str(MODELS / "mlp_dropout.py"), "--input-shape", "8,128:float99"],
        "inputs_fn": ["scan", str(MODELS / "sources.py"), "--inputs", f"{MODELS / 'sources.py'}:nope"],
        "locked": ["scan", str(tmp / "locked.py"), "--input-shape", "1,2"],
        "debug": ["scan", str(MODELS / "factory_raises.py"), "--debug"],
    }


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """The real command line, one process per case, all started at once (each imports torch)."""
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "broken.py").write_text(BROKEN)
    (tmp / "needs_dep.py").write_text(NEEDS_DEP)
    (tmp / "locked.py").write_text(LOCKED)
    procs = {
        name: subprocess.Popen([sys.executable, "-m", "torchaudit", *args], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for name, args in _cases(tmp).items()
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return results


@slow
def test_missing_file(cli):
    assert_user_error(cli["missing"], "model file not found: no/such/model.py", "check the path")


@slow
def test_syntax_error_in_model_file(cli):
    assert_user_error(cli["syntax"], "syntax error in broken.py line 3", "fix the model file")


@slow
def test_failing_import_inside_model_file(cli):
    assert_user_error(
        cli["import"], "ModuleNotFoundError", "ta_not_installed_anywhere", "fix the error in the model file or its imports"
    )


@slow
def test_no_model_found(cli):
    assert_user_error(cli["no_model"], "no nn.Module subclass", "no_model.py:NAME")


@slow
def test_several_candidates(cli):
    line = assert_user_error(cli["several"], "several candidate models", "Decoder, Encoder")
    assert "several.py:Decoder" in line


@slow
def test_factory_that_raises(cli):
    assert_user_error(
        cli["raises"], "building", "build_model failed: RuntimeError: weights directory is missing",
        "fix the constructor or factory",
    )


@slow
def test_factory_returning_a_non_module(cli):
    assert_user_error(cli["not_module"], "returned a dict, not an nn.Module", "return the model")


@slow
def test_inputs_that_make_forward_fail(cli):
    assert_user_error(
        cli["forward"], "forward failed on the example inputs", "x=Tensor[2,10]:float32", "mat1 and mat2", "--input-shape"
    )


@slow
def test_input_shape_that_makes_forward_fail(cli):
    assert_user_error(cli["shape_forward"], "from --input-shape 4,3", "x=Tensor[4,3]:float32")


@slow
@pytest.mark.parametrize("shape", ["8,x", "8,128:float99"])
def test_malformed_input_shape(cli, shape):
    assert_user_error(cli[f"shape_{shape}"], repr(shape), "e.g.")


@slow
def test_inputs_function_missing(cli):
    assert_user_error(cli["inputs_fn"], "no function 'nope'")


@slow
def test_model_that_cannot_be_copied(cli):
    assert_user_error(cli["locked"], "cannot copy the model", "deep-copyable")


@slow
def test_debug_shows_the_traceback(cli):
    res = cli["debug"]
    assert res.returncode == 2
    assert "Traceback" in res.stderr and "weights directory is missing" in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("torchaudit: error: ")


def test_version_and_help_do_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from torchaudit.cli import app\n"
        "r = CliRunner().invoke(app, ['--version'])\n"
        "assert r.exit_code == 0 and r.output.startswith('torchaudit 0.'), r.output\n"
        "for args in (['--help'], ['scan', '--help']):\n"
        "    r = CliRunner().invoke(app, args)\n"
        "    assert r.exit_code == 0 and 'scan' in r.output, r.output\n"
        "print('torch' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


def test_python_dash_m_and_console_script():
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.startswith("torchaudit ")
    script = Path(sys.executable).with_name("torchaudit")
    res = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("torchaudit ")


@slow
def test_console_script_finds_package_targets_in_the_working_folder():
    script = Path(sys.executable).with_name("torchaudit")
    res = subprocess.run(
        [str(script), "scan", "pkg_models.zoo:build_zoo", "--input-shape", "2,4", "--static-only"],
        capture_output=True, text=True, cwd=MODELS, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "pkg_models.zoo:build_zoo" in res.stdout


@slow
def test_json_on_stdout_stays_valid_when_the_model_prints():
    import json

    res = run_cli("scan", str(MODELS / "chatty.py"), "--static-only", "--json", "-")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["target"]["model_class"] == "Chatty"
    assert "loading chatty" in res.stderr
