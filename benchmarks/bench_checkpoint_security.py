"""Every malicious checkpoint and every robustness probe of the test suite, through the CLI.

Builds each real malicious file (``tests/malicious.py``: each creates its canary when
unpickled) and each hostile-but-inert probe (``tests/probes.py``) in a temporary folder
(deleted at the end), then judges each file with the command line in a fresh process (one
function, ``command``, says which: ``scan`` with a two-line model, or the standalone
``checkpoint`` command), measuring its wall time and peak RSS (``os.wait4``'s rusage of that
child). Per malicious file: flagged (the JSON report has a TA601 finding naming the builder's
global with ``dangerous: true``, or a TA605 "archive readers disagree" finding), executed (its
canary exists), internal error (exit code not 0/1/2, a traceback on stderr, or a TA9xx
finding, or the CLI's "internal error" line). Per probe: ok = exit 0/1/2 with at most one line
on stderr, no internal error, within 10 s and 512 MB (DESIGN.md, Performance: any checkpoint
under 10 MB), and the finding ``probes.FINDS`` names for it, if any.

    python benchmarks/bench_checkpoint_security.py                 # every file (a few minutes)
    python benchmarks/bench_checkpoint_security.py --quick         # three malicious files, two probes
    python benchmarks/bench_checkpoint_security.py --only zip_bad_crc --only zip_bomb_pickle
    python benchmarks/bench_checkpoint_security.py --command checkpoint --json

Each run's address space is capped (``--memory-cap-mb``, default 4096; a run that needs more
fails and is counted against its limits). Exit 1 if any payload executed, else 0 (the other
figures are printed, not gated).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import malicious, probes  # noqa: E402  (the builders live with the tests)

LIMIT_S, LIMIT_MB = 10.0, 512.0  # DESIGN.md, Performance
HARD_TIMEOUT_S = 120.0  # a run past this is killed (and counted as over the limit)
QUICK = ("zip_os_system", "legacy_subprocess", "raw_exec", "ansi_global_name", "stride0_nan_expand")
MODEL = "import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n" \
        "        self.fc = nn.Linear(2, 2)\n\n    def forward(self, x):\n        return self.fc(x)\n"


MODEL_RULES = {"TA301", "TA302", "TA303", "TA304", "TA305", "TA306"}  # they compare the checkpoint with a model


def command(kind: str, model: Path, file: Path, report: Path) -> list[str]:
    """The command line that judges ``file``: the one place to change when the command does."""
    cli = [sys.executable, "-m", "torchaudit"]
    if kind == "checkpoint":
        return [*cli, "checkpoint", str(file), "--json", str(report)]
    # the JSON report also on stdout (ignored) keeps the terminal summary off stderr, which then
    # holds only what went wrong
    return [*cli, "scan", str(model), "--checkpoint", str(file), "--static-only", "--output-format", "json",
            "--json", str(report)]


@dataclass
class Run:
    name: str
    kind: str  # "malicious" or "probe"
    exit: int
    seconds: float
    rss_mb: float
    stderr_lines: int
    stderr_tail: str
    flagged: bool | None = None  # malicious only
    executed: bool = False
    internal_error: bool = False
    ok: bool | None = None  # probes only
    note: str = ""  # stderr's last line, or the TA9xx finding that says what broke

    def line(self) -> str:
        if self.kind == "malicious":
            verdict = "flagged" if self.flagged else "MISSED"
            verdict += ", EXECUTED" if self.executed else ""
        else:
            verdict = "probe ok" if self.ok else "probe FAIL"
        verdict += ", INTERNAL ERROR" if self.internal_error else ""
        return f"{self.name:46s} exit {self.exit:3d}  {verdict:28s} {self.seconds:6.2f} s {self.rss_mb:7.1f} MB  {self.note[:120]}"


def run_child(cmd: list[str], cwd: Path, out: Path, err: Path, cap_mb: int) -> tuple[int, float, float]:
    """Run ``cmd``; its exit code (negative: killed by that signal), wall seconds and peak RSS
    in MB, the rusage of that one child (``os.wait4``). ``cap_mb`` > 0 caps its address space
    (RLIMIT_AS), so a file that makes the reader allocate gigabytes fails there instead of
    taking a shared machine's memory."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))

    def cap() -> None:
        if cap_mb > 0:
            resource.setrlimit(resource.RLIMIT_AS, (cap_mb << 20, cap_mb << 20))

    start = time.perf_counter()
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, env=env, preexec_fn=cap)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > HARD_TIMEOUT_S:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait for it again
    return proc.returncode, seconds, usage.ru_maxrss / 1024  # KiB on Linux


def judge(name: str, kind: str, file: Path, expected: str | None, tmp: Path, args: argparse.Namespace, model: Path) -> Run:
    report, out, err = tmp / f"{name}.report.json", tmp / f"{name}.out", tmp / f"{name}.err"
    canary = tmp / f"{name}.canary"
    code, seconds, rss = run_child(command(args.command, model, file, report), tmp, out, err, args.memory_cap_mb)
    stderr = err.read_text(errors="replace")
    findings: list[dict] = []
    if report.exists():
        try:
            findings = json.loads(report.read_text()).get("findings", [])
        except (ValueError, AttributeError):
            findings = []
    # the CLI's own catch-all ("torchaudit: internal error: ...", exit 2) is a bug too
    internal = code not in (0, 1, 2) or "Traceback (most recent call last)" in stderr \
        or "torchaudit: internal error" in stderr or any(str(f.get("rule", "")).startswith("TA9") for f in findings)
    lines = len(stderr.strip().splitlines())
    broke = [f"{f['rule']} {f.get('message', '')}" for f in findings if str(f.get("rule", "")).startswith("TA9")]
    note = broke[0] if broke else (stderr.strip().splitlines()[-1] if stderr.strip() else "")
    run = Run(name, kind, code, seconds, rss, lines, stderr[-2000:], executed=canary.exists(), internal_error=internal,
              note=note)
    if kind == "malicious":
        run.flagged = any(
            (f.get("rule") == "TA601" and f.get("evidence", {}).get("global") == expected
             and f.get("evidence", {}).get("dangerous") is True) or f.get("rule") == "TA605"
            for f in findings)
    else:
        run.ok = code in (0, 1, 2) and lines <= 1 and seconds <= LIMIT_S and rss <= LIMIT_MB and not internal
        finds = probes.FINDS.get(name)
        if args.command == "checkpoint" and finds in MODEL_RULES:
            finds = None  # no model to compare the checkpoint with: the key rules cannot run
        if finds and not any(f.get("rule") == finds for f in findings):
            run.ok, run.note = False, f"no {finds} finding. {run.note}"
    return run


def build_all(tmp: Path, names: set[str] | None) -> list[tuple[str, str, Path, str | None]]:
    """Every builder's and probe's file in ``tmp``: (name, kind, path, expected global)."""
    files = []
    for name, build in sorted(malicious.BUILDERS.items()):
        if names is None or name in names:
            path = tmp / f"{name}.pt"
            files.append((name, "malicious", path, build(path, tmp / f"{name}.canary")))
    for name, (make, suffix) in sorted(probes.PROBES.items()):
        if names is None or name in names:
            path = tmp / f"{name}{suffix}"
            make(path)
            files.append((name, "probe", path, None))
    return files


def summary(runs: list[Run]) -> str:
    bad = [r for r in runs if r.kind == "malicious"]
    flagged = sum(bool(r.flagged) for r in bad)
    executed = sum(r.executed for r in runs)
    errors = sum(r.internal_error for r in runs)
    slow = max(runs, key=lambda r: r.seconds)
    big = max(runs, key=lambda r: r.rss_mb)
    return (f"{flagged}/{len(bad)} malicious flagged, {executed} executed, {errors} internal errors, "
            f"worst time {slow.seconds:.2f} s ({slow.name}), worst RSS {big.rss_mb:.0f} MB ({big.name})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    ap.add_argument("--only", action="append", metavar="NAME", help="only this builder or probe (repeatable)")
    ap.add_argument("--command", choices=("scan", "checkpoint"), default="scan", help="how the CLI is asked (default scan)")
    ap.add_argument("--json", action="store_true", help="also print every run as one JSON line before the summary")
    ap.add_argument("--memory-cap-mb", type=int, default=4096,
                    help="cap each run's address space (RLIMIT_AS) at this many MB; 0: no cap (default 4096)")
    args = ap.parse_args()
    names = set(args.only or ()) | (set(QUICK) if args.quick else set())
    unknown = names - set(malicious.BUILDERS) - set(probes.PROBES)
    if unknown:
        ap.error(f"no builder or probe named {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="bench-security-") as tmp_name:
        tmp = Path(tmp_name)
        model = tmp / "net.py"
        model.write_text(MODEL)
        runs = []
        for name, kind, path, expected in build_all(tmp, names or None):
            runs.append(judge(name, kind, path, expected, tmp, args, model))
            print(runs[-1].line(), flush=True)
    probe_runs = [r for r in runs if r.kind == "probe"]
    if probe_runs:
        failed = [r.name for r in probe_runs if not r.ok]
        print(f"probes: {len(probe_runs) - len(failed)}/{len(probe_runs)} ok" + (f" (failed: {', '.join(failed)})" if failed else ""))
    if args.json:
        print(json.dumps([asdict(r) for r in runs]))
    print(summary(runs))
    return 1 if any(r.executed for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
