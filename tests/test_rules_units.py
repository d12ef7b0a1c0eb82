"""Rules whose evidence is the environment, and graph evidence from torch.export."""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

import torchaudit
from torchaudit.analyzer.context import AuditContext
from torchaudit.analyzer.environment import environment
from torchaudit.rules.engine import run_rules

FIXTURES = Path(__file__).parent / "fixtures" / "rules"


def _context(**env_changes: object) -> AuditContext:
    env = environment()
    flags = dict(env["flags"])
    for key in list(env_changes):
        if key in flags:
            flags[key] = env_changes.pop(key)
    env = {**env, **env_changes, "flags": flags}
    return AuditContext(model=nn.Linear(2, 2), target=None, inputs=None, graph=None, environment=env)


def test_ta604_fires_only_below_torch_2_6() -> None:
    findings, _ = run_rules(_context(torch="2.5.1+cpu"), select=["TA604"])
    assert [(f.rule, f.evidence["torch"]) for f in findings] == [("TA604", "2.5.1+cpu")]
    assert run_rules(_context(torch="2.6.0"), select=["TA604"])[0] == []
    assert run_rules(_context(torch="2.13.0"), select=["TA604"])[0] == []


def test_ta405_reads_the_environment() -> None:
    on, _ = run_rules(_context(allow_tf32_matmul=True), select=["TA405"])
    assert [f.rule for f in on] == ["TA405"] and "allow_tf32 is True" in on[0].message
    high, _ = run_rules(_context(float32_matmul_precision="high"), select=["TA405"])
    assert [f.rule for f in high] == ["TA405"]
    # cuDNN's TF32 default only matters where CUDA runs
    cpu, _ = run_rules(
        _context(allow_tf32_matmul=False, float32_matmul_precision="highest", allow_tf32_cudnn=True, cuda_available=False),
        select=["TA405"],
    )
    assert cpu == []
    gpu, _ = run_rules(
        _context(allow_tf32_matmul=False, float32_matmul_precision="highest", allow_tf32_cudnn=True, cuda_available=True),
        select=["TA405"],
    )
    assert [f.rule for f in gpu] == ["TA405"] and "cudnn" in gpu[0].message


def test_ta101_from_an_export_graph_names_the_aten_node() -> None:
    report = torchaudit.scan(str(FIXTURES / "ta101_export_graph.py"), select=["TA101"], static_only=True)
    assert report.graph is not None and report.graph.tracer == "export"
    [finding] = report.findings
    assert finding.node == "dropout" and finding.evidence["target"] == "aten.dropout.default"
    assert finding.location is not None and finding.location.line == 17


def test_ta101_without_source_still_comes_from_the_fx_graph() -> None:
    import torch
    import torch.nn.functional as F

    class Live(nn.Module):
        def forward(self, x):
            return F.dropout(x, 0.5)

    report = torchaudit.scan(Live().eval(), torch.randn(2, 3), select=["TA101"], static_only=True)
    assert [(f.rule, f.node) for f in report.findings] == [("TA101", "dropout")]


def test_user_model_is_left_unchanged() -> None:
    import torch

    model = torchaudit.analyzer.load.target.load_target(str(FIXTURES / "ta108_frozen_batchnorm.py")).model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    torchaudit.scan(model, torch.randn(4, 8))
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_crashing_rule_becomes_ta902_and_the_scan_goes_on(monkeypatch) -> None:
    from torchaudit.rules.state.tied_weights import TiedWeights

    def boom(self, ctx):
        raise ValueError("lazy attribute exploded")

    monkeypatch.setattr(TiedWeights, "check", boom)
    report = torchaudit.scan(str(FIXTURES / "ta204_tied_weights.py"), select=["TA2", "TA9", "TA107"], static_only=True)
    crash = [f for f in report.findings if f.rule == "TA902"]
    assert len(crash) == 1 and crash[0].evidence["failed_rule"] == "TA204"
    assert "ValueError: lazy attribute exploded" in crash[0].message
    assert not any(f.rule == "TA204" for f in report.findings)


def test_select_accepts_a_comma_string_in_the_api() -> None:
    report = torchaudit.scan(str(FIXTURES / "ta106_train_mode.py"), select="TA106,TA9", static_only=True)
    assert {f.rule for f in report.findings} == {"TA106"}


def test_ta502_a_trace_made_where_cuda_runs_and_the_source_give_one_finding_per_line(tmp_path: Path) -> None:
    from torchaudit.analyzer.load.target import load_target
    from torchaudit.analyzer.trace.tracing import trace_fx

    path = tmp_path / "cuda_model.py"
    path.write_text(
        "import torch\nimport torch.nn as nn\n\n\n"
        "def helper(a, b):\n"
        "    return a.to('cuda:1') * b\n\n\n"  # line 6: no class, no factory: only the graph sees it run
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(8, 8)\n\n"
        "    def forward(self, x):\n"
        "        y = self.fc(x).cuda()\n"  # line 15
        "        m = torch.ones(x.shape[-1], device='cuda:0')\n"  # line 16
        "        return helper(y, m)\n\n\n"
        "def build_model():\n    return Net().eval()\n"
    )
    target = load_target(str(path))
    # symbolic tracing runs no op, so this CPU machine records what a trace on a CUDA machine does
    graph = trace_fx(target.model, None, run_check=False)
    ctx = AuditContext(model=target.model, target=target, inputs=None, graph=graph, environment=environment())
    findings, _ = run_rules(ctx, select=["TA502"])
    got = sorted((f.location.line, f.node, f.evidence["code"]) for f in findings if f.location is not None)
    assert got == [(6, "to", '.to("cuda:1")'), (15, "cuda", ".cuda()"), (16, "ones", 'device="cuda:0"')], got
    assert all(f.module == "" for f in findings)
