"""One Settings for every entry point (torchaudit/settings.py): every ``[tool.torchaudit]`` key
changes the outcome as its flag does, ``--config``/``--isolated``, the ``config:`` line, early
checks of paths and option values, selectors that match nothing, usage errors as one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import torchaudit
from tests.conftest import EXAMPLES, invoke_cli
from torchaudit.settings import COMPARISON_NAMES, KEYS, Settings, resolve

EXAMPLE = EXAMPLES / "mlp_bn_dropout.py"
Outcome = tuple[int, dict[str, Any], Path, str]  # exit code, JSON on stdout, project folder, stdout


def _project(tmp_path: Path, lines: list[str]) -> Path:
    """A project folder: the example model, a checkpoint of it, an inputs file, a pyproject."""
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    shutil.copy(EXAMPLE, folder / "model.py")
    if not (folder / "w.pt").exists():
        import torch

        from torchaudit.analyzer.load.target import load_target

        import argparse

        state = load_target(str(folder / "model.py")).model.state_dict()
        torch.save(state, folder / "w.pt")
        # a training checkpoint with a pickled object: read as trusted only with trust-checkpoint
        torch.save({"state_dict": state, "args": argparse.Namespace(lr=0.1)}, folder / "train.pt")
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "w.safetensors"))
    if any(line.startswith("against") for line in lines) and not (folder / "run").exists():
        from torchaudit.recording import record

        record(str(folder / "model.py"), str(folder / "run"))  # what `against = "run"` names
    (folder / "inp.py").write_text("import torch\n\ndef make():\n    return torch.ones(3, 16)\n")
    (folder / "pyproject.toml").write_text("[tool.torchaudit]\n" + "\n".join(lines) + "\n")
    return folder


def _run(tmp_path: Path, lines: list[str], *flags: str) -> Outcome:
    folder = _project(tmp_path, lines)
    # from another cwd: relative paths in the file must be relative to the file
    out = invoke_cli("scan", str(folder / "model.py"), *flags, cwd=tmp_path.parent)
    data = json.loads(out.stdout) if "--json" in flags and out.stdout.strip() else {}
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, data, folder, out.stdout


def _comparison(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in data["comparisons"] if c["name"] == name)


STATIC = 'static-only = true'
MODE = 'compare = ["mode"]'
JSON = ("--json", "-")
CUSTOM = ['reference = "cpu:float32"', 'candidate = "cpu:float32"']
# key -> (the lines without it (or with another value), the key's line, flags, what the outcome shows)
CASES: dict[str, tuple[list[str], str, tuple[str, ...], Callable[[Outcome], Any]]] = {
    "inputs": ([STATIC], 'inputs = "inp.py:make"', JSON, lambda o: o[1]["target"]["inputs"]),
    "input-shape": ([STATIC], 'input-shape = ["5,16"]', JSON, lambda o: o[1]["target"]["inputs"]),
    "checkpoint": ([STATIC], 'checkpoint = "w.pt"', JSON, lambda o: o[1]["target"]["checkpoint"]),
    "trust-checkpoint": ([STATIC, 'checkpoint = "train.pt"'], "trust-checkpoint = true", JSON,
                         lambda o: o[1]["target"]["checkpoint_info"]["trusted"]),
    "meta": ([STATIC], "meta = true", JSON, lambda o: o[1].get("meta")),
    "compare": ([], 'compare = "mode,determinism"', JSON, lambda o: [c["name"] for c in o[1]["comparisons"]]),
    "reference": ([MODE, *CUSTOM], 'reference = "cpu:float64"', JSON, lambda o: _comparison(o[1], "custom")["reference"]),
    "candidate": ([MODE, *CUSTOM], 'candidate = "cpu:float64"', JSON, lambda o: _comparison(o[1], "custom")["candidate"]),
    "static-only": ([MODE], STATIC, JSON, lambda o: [c["name"] for c in o[1]["comparisons"]]),
    "atol": (['compare = ["dtype"]'], "atol = 0.5", JSON, lambda o: _comparison(o[1], "dtype")["tolerance"]),
    "rtol": (['compare = ["dtype"]'], "rtol = 0.5", JSON, lambda o: _comparison(o[1], "dtype")["tolerance"]),
    "seed": ([MODE, 'input-shape = ["8,16"]', 'checkpoint = "w.pt"'], "seed = 7", JSON, lambda o: _comparison(o[1], "mode")["output"]),
    "select": ([STATIC], 'select = ["TA106"]', JSON, lambda o: sorted({f["rule"] for f in o[1]["findings"]})),
    "ignore": ([STATIC], 'ignore = "TA101,TA107"', JSON, lambda o: sorted({f["rule"] for f in o[1]["findings"]})),
    "fail-on": ([STATIC, 'select = ["TA101"]'], 'fail-on = "NEVER"', JSON, lambda o: o[0]),
    "baseline": ([STATIC], 'baseline = "base.json"', JSON, lambda o: o[1]["findings"]),
    "json": ([STATIC], 'json = "out/r.json"', (), lambda o: (o[2] / "out" / "r.json").is_file()),
    "html": ([STATIC], 'html = "out/r.html"', (), lambda o: (o[2] / "out" / "r.html").is_file()),
    "markdown": ([STATIC], 'markdown = "out/r.md"', (), lambda o: (o[2] / "out" / "r.md").is_file()),
    "sarif": ([STATIC], 'sarif = "out/r.sarif"', (), lambda o: (o[2] / "out" / "r.sarif").is_file()),
    "output-format": ([STATIC], 'output-format = "concise"', (), lambda o: o[3].count("fix:")),  # concise: no fix lines
    "stream-weights": ([MODE, 'checkpoint = "w.safetensors"'], "stream-weights = true", JSON,
                       lambda o: o[1].get("streamed_weights", {}).get("reason")),
    "against": (['compare = ["record"]'], 'against = "run"', JSON, lambda o: _comparison(o[1], "record")["status"]),
}


def test_cases_cover_every_key() -> None:
    assert sorted(CASES) == sorted(KEYS)


@pytest.mark.parametrize("key", sorted(KEYS))
def test_every_key_changes_the_outcome(tmp_path: Path, key: str) -> None:
    without, line, flags, shows = CASES[key]
    if key == "baseline":
        folder = _project(tmp_path, without)
        out = invoke_cli("scan", str(folder / "model.py"), "--static-only", "--write-baseline", str(folder / "base.json"))
        assert out.returncode == 0, out.stderr
    before = shows(_run(tmp_path, without, *flags))
    assert shows(_run(tmp_path, without, *flags)) == before, key  # the outcome is reproducible: the key makes the change
    after = shows(_run(tmp_path, [*(w for w in without if not w.startswith(key + " ")), line], *flags))
    assert before != after, (key, before, after)


def test_file_values_mean_what_their_flags_mean(tmp_path: Path) -> None:
    folder = _project(tmp_path, ['compare = ["mode"]', "seed = 7", "atol = 0.25", 'fail-on = "warning"'])
    from_file = resolve(str(folder / "model.py"), {})
    from_flags = resolve(str(folder / "model.py"), {"compare": ["mode"], "seed": 7, "atol": 0.25, "fail_on": "warning"},
                         isolated=True)
    assert from_file == Settings(**{**from_flags.__dict__, "config": str(folder / "pyproject.toml")})


def test_flags_complete_the_file(tmp_path: Path) -> None:
    folder = _project(tmp_path, ['reference = "cpu:float64"', 'json = "-"'])
    settings = resolve(str(folder / "model.py"), {"candidate": "cpu:float32", "json": "r.json", "sarif": "-"})
    assert (settings.reference, settings.candidate, settings.stdout_report) == ("cpu:float64", "cpu:float32", "sarif")


def test_wrong_type_in_file_is_exit_2(tmp_path: Path) -> None:
    folder = _project(tmp_path, ['seed = "7"'])
    out = invoke_cli("scan", str(folder / "model.py"))
    assert out.returncode == 2 and "seed in [tool.torchaudit]" in out.stderr and "must be an integer" in out.stderr


def test_first_line_names_the_config_file(tmp_path: Path) -> None:
    folder = _project(tmp_path, [STATIC, 'select = ["TA106"]'])
    out = invoke_cli("scan", "model.py", cwd=folder)
    assert out.stdout.splitlines()[0] == "config: pyproject.toml", out.stdout
    out = invoke_cli("scan", "model.py", "--isolated", "--static-only", cwd=folder)
    assert not out.stdout.startswith("config:") and "TA101" in out.stdout  # the file's select is not read
    out = invoke_cli("scan", str(EXAMPLE), "--static-only", cwd=tmp_path)  # examples/ has no [tool.torchaudit]
    assert "config:" not in out.stdout


def test_config_option_reads_that_file(tmp_path: Path) -> None:
    folder = _project(tmp_path, ['select = ["TA999"]'])  # the nearest file would be an error
    other = tmp_path / "ci.toml"
    other.write_text('static-only = true\nselect = ["TA106"]\n')
    out = invoke_cli("scan", str(folder / "model.py"), "--config", str(other), "--json", "-", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines()[0] == "config: ci.toml"
    assert {f["rule"] for f in json.loads(out.stdout)["findings"]} == {"TA106"}
    out = invoke_cli("scan", str(folder / "model.py"), "--config", str(tmp_path / "none.toml"))
    assert out.returncode == 2 and "--config file not found" in out.stderr


def test_diff_reads_its_keys(tmp_path: Path) -> None:
    folder = _project(tmp_path, ['json = "out/diff.json"', 'fail-on = "never"', "static-only = true"])
    out = invoke_cli("diff", "model.py", "w.pt", "w.pt", "--input-shape", "2,16", cwd=folder)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "config: pyproject.toml"
    assert json.loads((folder / "out" / "diff.json").read_text())["summary"]["fail_on"] == "never"


def test_python_api_takes_settings(tmp_path: Path) -> None:
    folder = _project(tmp_path, [STATIC, 'select = ["TA106"]'])
    settings = resolve(str(folder / "model.py"), {})
    report = torchaudit.scan(str(folder / "model.py"), settings=settings)
    assert {f.rule for f in report.findings} == {"TA106"} and report.comparisons == []
    report = torchaudit.scan(str(folder / "model.py"), settings=settings, select=["TA101"])  # keywords win
    assert {f.rule for f in report.findings} == {"TA101"}


# --- checks before the model is imported -----------------------------------------------------


def _early(tmp_path: Path, *args: str) -> str:
    """The command fails with one line, exit 2, before the model file is imported."""
    model = tmp_path / "loud.py"
    model.write_text("raise SystemExit('the model was imported')\n")
    out = invoke_cli("scan", str(model), *args, cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("torchaudit: error: "), out.stderr
    assert "imported" not in out.stderr
    return out.stderr


@pytest.mark.parametrize("args, needle", [
    (("--select", "TA999"), "unknown rule selector 'TA999'"),
    (("--select", "TA8"), "unknown rule selector 'TA8'"),
    (("--ignore", "TA999"), "unknown rule selector 'TA999' in --ignore"),
    (("--atol", "-1"), "--atol -1.0 is not a tolerance"),
    (("--rtol", "-0.5"), "--rtol -0.5 is not a tolerance"),
    (("--input-shape", "4 1 28 28"), "use commas"),
    (("--compare", "dtype,nope"), "unknown comparison 'nope'"),
    (("--fail-on", "sometimes"), "--fail-on 'sometimes' is not one of"),
    (("--reference", "cpu:float99", "--candidate", "cpu:float32"), "unknown dtype 'float99' in --reference"),
    (("--candidate", "tpu:float32", "--reference", "cpu:float32"), "unknown device 'tpu' in --candidate"),
    (("--reference", "cpu:float64"), "--reference is set without candidate"),
    (("--checkpoint", "missing.pt"), "checkpoint not found: missing.pt"),
    (("--inputs", "missing.py:make"), "--inputs file not found"),
    (("--html", "."), "--html .: is a directory"),
    (("--sarif", "loud.py/r.sarif"), "--sarif loud.py/r.sarif: cannot create its folder"),  # under a file
    (("--json", "-", "--sarif", "-"), "--json and --sarif both write to stdout"),
    (("--seed", "abc"), "Invalid value for '--seed'"),
])
def test_bad_values_are_exit_2_before_the_model_is_imported(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    assert needle in _early(tmp_path, *args)


def test_unwritable_output_is_exit_2_before_the_model_is_imported(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        import os

        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        assert "cannot write there" in _early(tmp_path, "--markdown", str(locked / "r.md"))
    finally:
        locked.chmod(0o700)


def test_missing_output_folders_are_made(tmp_path: Path) -> None:
    out = invoke_cli("scan", str(EXAMPLE), "--static-only", "--html", str(tmp_path / "missing" / "x.html"))
    assert out.returncode == 1, out.stderr
    assert (tmp_path / "missing" / "x.html").is_file()


def test_valid_prefixes_and_any_case_keep_working() -> None:
    out = invoke_cli("scan", str(EXAMPLE), "--static-only", "--select", "ta1,TA20", "--fail-on", "ERROR", "--json", "-")
    assert out.returncode == 1, out.stderr
    assert {f["rule"][:3] for f in json.loads(out.stdout)["findings"]} <= {"TA1", "TA2"}


def test_compare_takes_comma_lists_and_any_case() -> None:
    out = invoke_cli("scan", str(EXAMPLE), "--compare", "DTYPE,mode", "--json", "-")
    assert [c["name"] for c in json.loads(out.stdout)["comparisons"]] == ["dtype", "mode"], out.stderr


@pytest.mark.parametrize("flag", ["--markdown", "--sarif", "--html"])
def test_dash_is_stdout_for_every_report(tmp_path: Path, flag: str) -> None:
    out = invoke_cli("scan", str(EXAMPLE), "--static-only", flag, "-", cwd=tmp_path)
    assert out.returncode == 1 and not (tmp_path / "-").exists()
    assert "TA101" in out.stdout and "PASS" not in out.stdout and "FAIL" in out.stderr  # the summary goes to stderr
    if flag == "--sarif":
        assert json.loads(out.stdout)["version"] == "2.1.0"


EARLY = """
import sys
from torchaudit.cli import main
for args in {cases!r}:
    sys.argv = ["torchaudit", "scan", "m.py", *args]
    try:
        main()
    except SystemExit as exc:
        print(exc.code)
print("torch imported:", "torch" in sys.modules)
"""


def test_early_errors_come_before_torch_is_imported(tmp_path: Path) -> None:
    """A fresh interpreter: bad values, missing files and unwritable paths are reported without importing torch."""
    cases = [["--input-shape", "4 1 28 28"], ["--seed", "abc"], ["--atol", "-1"], ["--compare", "nope"],
             ["--reference", "cpu:f99", "--candidate", "cpu:float32"], ["--checkpoint", "nope.pt"],
             ["--inputs", "nope.py:f"], ["--html", str(tmp_path)], ["--select", "TA1X"]]
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", EARLY.format(cases=cases)], capture_output=True, text=True, cwd=tmp_path)
    assert res.stdout.split() == ["2"] * len(cases) + ["torch", "imported:", "False"], (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == len(cases) and all(line.startswith("torchaudit: error: ") for line in lines), res.stderr
    assert "use commas" in lines[0] and "Invalid value for '--seed'" in lines[1]
    assert time.perf_counter() - start < 10  # one interpreter, no torch: about a second on a quiet machine


def test_reference_and_candidate_take_any_case() -> None:
    settings = Settings().replace(reference="CPU:Float64:EVAL", candidate="cpu:FP16")
    assert (settings.reference, settings.candidate) == ("cpu:float64:eval", "cpu:fp16")


def test_registries_agree_with_the_cheap_copies() -> None:
    from torchaudit.analyzer.compare.comparisons import COMPARISONS, DTYPES
    from torchaudit.analyzer.dtypes import dtype_name
    from torchaudit.report import DTYPE_ALIASES

    assert set(COMPARISON_NAMES) == {"auto", *COMPARISONS} - {"custom"}
    # every dtype name a configuration may use is a torch dtype of the name it stands for
    assert set(DTYPES) == set(DTYPE_ALIASES) and all(dtype_name(DTYPES[a]) == n for a, n in DTYPE_ALIASES.items())


def test_help_names_the_config_options() -> None:
    out = invoke_cli("scan", "--help")
    assert out.returncode == 0
    for text in ("--config", "--isolated", "--no-static-only", "[tool.torchaudit]"):
        assert text in out.stdout, text


def test_input_shape_dtype_takes_any_case_and_no_spaces_in_the_api() -> None:
    from torchaudit.analyzer.load.inputs import parse_input_shape
    from torchaudit.errors import InputError

    assert str(parse_input_shape("2,3:INT64").dtype) == "torch.int64"
    with pytest.raises(InputError, match="separated by spaces"):
        parse_input_shape("4 1 28 28")


def test_compare_and_assert_consistent_take_the_projects_settings(tmp_path):
    """``[tool.torchaudit]`` atol/rtol/seed reach the two-model API as they reach scan;
    a keyword argument still wins."""
    import torch

    import torchaudit
    from torchaudit.settings import resolve

    (tmp_path / "pyproject.toml").write_text("[tool.torchaudit]\natol = 10.0\nrtol = 10.0\nseed = 3\n")
    model_file = tmp_path / "m.py"
    model_file.write_text("")
    settings = resolve(str(model_file), {})
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    assert torchaudit.compare(a, b, x).status.value == "diverged"
    loose = torchaudit.compare(a, b, x, settings=settings)
    assert loose.status.value == "matched" and loose.tolerance == {"atol": 10.0, "rtol": 10.0}
    torchaudit.assert_consistent(a, b, x, settings=settings)  # does not raise
    assert torchaudit.compare(a, b, x, settings=settings, atol=1e-5, rtol=1e-6).status.value == "diverged"


def test_a_reference_in_the_file_without_a_candidate_names_the_file_not_a_flag(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.torchaudit]\nreference = "cpu:float64"\n')
    res = invoke_cli("scan", str(tmp_path / "m.py"), cwd=tmp_path)
    assert res.returncode == 2
    assert "reference in [tool.torchaudit] of" in res.stderr and "--reference" not in res.stderr.split(".")[0]
