"""``torchaudit.diff``: the checkpoint rules on both files (as ``scan --checkpoint`` runs them),
and its Report in every format, with the tensor table in JSON, HTML and Markdown."""

from __future__ import annotations

import json

import pytest
import torch

import torchaudit
from tests.conftest import ROOT
from tests.dynamic import models as M
from torchaudit.reports.files import write_reports
from torchaudit.reports.markdown import MAX_LINES, MAX_TENSORS

TARGET = "tests/dynamic/models.py:LinearBN"


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def _trained_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = M.LinearBN().train()
    model(torch.randn(16, 6))  # BatchNorm statistics accumulated: no TA306 on a good file
    return model.state_dict()


@pytest.fixture
def files(tmp_path):
    good = _trained_state()
    torch.save(good, tmp_path / "a.pt")
    torch.save({**good, "out.weight": good["out.weight"] * 1.5}, tmp_path / "b.pt")
    torch.manual_seed(1)
    torch.save(M.SmallCNN().state_dict(), tmp_path / "other_model.pt")
    torch.save({**good, "fc.weight": torch.zeros(8, 7)}, tmp_path / "wrong_shape.pt")
    return tmp_path


def test_a_checkpoint_of_another_model_fails_the_diff_as_it_fails_scan(files):
    a, other = str(files / "a.pt"), str(files / "other_model.pt")
    report = torchaudit.diff(TARGET, a, other, input_shapes=["4,6"])
    assert report.exit_code == 1 and report.summary.verdict == "fail"
    scanned = torchaudit.scan(TARGET, checkpoint=other, input_shapes=["4,6"], static_only=True)
    expected = sorted((f.rule, f.message) for f in scanned.findings if f.rule.startswith(("TA3", "TA6")))
    assert {"TA301", "TA302"} <= {rule for rule, _ in expected}
    got = sorted((f.rule, f.message.removeprefix("checkpoint B: ")) for f in report.findings if f.rule.startswith("TA3"))
    assert got == expected  # the same rules, the same findings, each labelled with its file
    for f in report.findings:
        assert f.evidence["checkpoint"] == "B" and f.message.startswith("checkpoint B: ")
        assert f.location is not None and f.location.file.endswith("other_model.pt")
    [c] = report.comparisons
    assert c.name == "checkpoints" and c.status.value == "skipped" and "other_model.pt" in (c.skipped_reason or "")


def test_findings_name_which_file_they_are_about(files):
    report = torchaudit.diff(TARGET, str(files / "wrong_shape.pt"), str(files / "b.pt"), input_shapes=["4,6"])
    [f] = report.findings
    assert f.rule == "TA304" and f.evidence["checkpoint"] == "A" and f.message.startswith("checkpoint A: ")
    assert report.exit_code == 1
    assert torchaudit.diff(TARGET, str(files / "wrong_shape.pt"), str(files / "b.pt"), input_shapes=["4,6"],
                           fail_on="never").exit_code == 0


def test_two_good_checkpoints_pass_and_pin_the_change(files):
    report = torchaudit.diff(TARGET, str(files / "a.pt"), str(files / "b.pt"), input_shapes=["4,6"])
    assert report.findings == [] and report.exit_code == 0
    [c] = report.comparisons
    assert c.status.value == "diverged" and c.first_divergence is not None and c.first_divergence.module == "out"
    assert [r["key"] for r in report.extras["tensor_diff"] if r["status"] != "unchanged"] == ["out.weight"]


def test_every_report_format_of_a_diff(files, tmp_path):
    a, other = str(files / "a.pt"), str(files / "other_model.pt")
    report = torchaudit.diff(TARGET, a, other, input_shapes=["4,6"], command="torchaudit diff ...")
    out = tmp_path / "out"
    paths = {"json": out / "d.json", "html": out / "d.html", "markdown": out / "d.md", "sarif": out / "d.sarif"}
    write_reports(report, **{k: str(v) for k, v in paths.items()})

    data = json.loads(paths["json"].read_text())
    assert {r["status"] for r in data["tensor_diff"]} == {"only_in_a", "only_in_b"}
    assert data["summary"]["verdict"] == "fail" and data["target"]["checkpoints"] == [a, other]

    page = paths["html"].read_text()
    assert '<section id="tensors">' in page and "fc.weight" in page and "body.0.weight" in page
    assert "only in A" in page and "only in B" in page and "checkpoint B: the checkpoint has no" in page

    md = paths["markdown"].read_text()
    assert len(md.splitlines()) <= MAX_LINES
    assert "<details><summary>Tensors (A \u2192 B):" in md and md.rstrip().splitlines()[-3] == "</details>"
    assert "| `fc.weight` | 8x6 | float32 |  |  | only in A |" in md
    assert "`TA301`" in md and "torchaudit diff" in md

    run = json.loads(paths["sarif"].read_text())["runs"][0]
    assert {r["ruleId"] for r in run["results"]} >= {"TA301", "TA302"}
    assert all(r["message"]["text"].startswith("checkpoint B: ") for r in run["results"])
    assert run["invocations"][0]["exitCode"] == 1

    report.write(tmp_path / "again.md")  # Report.write renders the same
    assert (tmp_path / "again.md").read_text() == md


def test_markdown_caps_the_tensor_table(tmp_path):
    torch.manual_seed(0)
    model = M.SmallTransformer()
    sd = model.state_dict()
    torch.save(sd, tmp_path / "a.pt")
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in sd.items()}, tmp_path / "b.pt")
    report = torchaudit.diff("tests/dynamic/models.py:SmallTransformer", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"),
                             input_shapes=["2,16,8"])
    changed = [r for r in report.extras["tensor_diff"] if r["status"] != "unchanged"]
    assert len(changed) > MAX_TENSORS
    report.write(tmp_path / "d.md")
    md = (tmp_path / "d.md").read_text()
    assert len(md.splitlines()) <= MAX_LINES and "</details>" in md
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert len(rows) == MAX_TENSORS and f"and {len(changed) - MAX_TENSORS} more that differ" in md
    report.write(tmp_path / "d.html")
    page = (tmp_path / "d.html").read_text()
    assert all(r["key"] in page for r in changed)  # the HTML page shows them all (up to 1,000)


def test_the_tensor_table_compares_stored_values_not_claimed_elements():
    """Expanded (stride-0) tensors are compared once per stored value; two that repeat values along
    different dimensions would need far more work than the files hold, and say they were not compared."""
    from torchaudit.analyzer.compare.diff import tensor_diff

    n = 2**30
    a = {"same": torch.zeros(1).expand(n), "moved": torch.zeros(1).expand(n), "crossed": torch.zeros(2**15, 1).expand(2**15, 2**15)}
    b = {"same": torch.zeros(1).expand(n), "moved": torch.full((1,), 2.0).expand(n), "crossed": torch.zeros(1, 2**15).expand(2**15, 2**15)}
    rows = {r.key: (r.status, r.max_abs, r.max_rel) for r in tensor_diff(a, b)}
    assert rows == {"same": ("unchanged", 0.0, 0.0), "moved": ("changed", 2.0, None), "crossed": ("not_compared", None, None)}


def test_the_tensor_table_of_dense_tensors_is_exact_across_chunks(monkeypatch):
    from torchaudit.analyzer.compare.diff import tensor_diff
    from torchaudit.analyzer.load import stored_values

    torch.manual_seed(0)
    x = torch.randn(40, 30)
    y = x + torch.randn(40, 30) * 1e-3
    whole = (y.double() - x.double()).abs()
    monkeypatch.setattr(stored_values, "CHUNK", 64)  # 8 values of each side per step
    [row] = tensor_diff({"w": x.t()}, {"w": y.t()})
    assert (row.max_abs, row.max_rel) == (float(whole.max()), float((whole / x.double().abs()).max()))


def test_a_nan_that_appears_is_a_change_and_one_that_stays_is_not():
    from torchaudit.analyzer.compare.diff import tensor_diff

    nan = float("nan")
    a = {"appears": torch.tensor([1.0, 2.0]), "stays": torch.tensor([nan, 2.0]), "inf": torch.tensor([float("inf")])}
    b = {"appears": torch.tensor([1.0, nan]), "stays": torch.tensor([nan, 2.0]), "inf": torch.tensor([float("inf")])}
    assert [(r.key, r.status) for r in tensor_diff(a, b)] == [("appears", "changed"), ("stays", "unchanged"), ("inf", "unchanged")]
