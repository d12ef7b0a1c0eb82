"""Checkpoint files that claim more than they hold: time and peak memory of judging them.

Two small files, each judged end to end by ``torchaudit scan tiny.py --checkpoint FILE --json``
in a fresh process, beside a clean checkpoint of the same model (the floor: start-up, tracing,
reports):

* ``big-header``: a safetensors file of ``--tensors`` (80,000) tensors, about 7 MB, none of them
  the model's. Its header part (``load_checkpoint``: read, check, build the entries) is also
  timed alone, in a process that has imported torch already.
* ``stride-0``: a 1.6 KB ``torch.save`` file holding ``torch.full((1,), nan).expand(2**30)``,
  a view of 2**30 elements over one stored value. TA307 must fire on it.

Peak RSS is ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` of the scan's process, read by a
go-between process after the scan exits (so each figure is one scan's). Times are the best of
``--repeat`` runs. Targets (DESIGN.md, Performance; issue 14): a file under 10 MB is judged in
under 10 s and 512 MB RSS; the 80k header part takes under 2 s.

    python benchmarks/bench_checkpoint_claims.py [--tensors 80000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_S, TARGET_MB, TARGET_HEADER_S = 10.0, 512.0, 2.0
MODEL = """import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


def example_inputs():
    return torch.randn(1, 4)
"""


def write_files(folder: Path, tensors: int) -> dict[str, Path]:
    import torch

    (folder / "tiny.py").write_text(MODEL)
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for i in range(tensors):
        header[f"blocks.{i}.weight"] = {"dtype": "F32", "shape": [2], "data_offsets": [offset, offset + 8]}
        offset += 8
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    big = folder / "big80k.safetensors"
    big.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    torch.save({"fc.weight": torch.full((1,), float("nan")).expand(2**30)}, folder / "stride0.pt")
    torch.save({"fc.weight": torch.zeros(2, 4), "fc.bias": torch.zeros(2)}, folder / "clean.pt")
    return {"clean": folder / "clean.pt", "big-header": big, "stride-0": folder / "stride0.pt"}


def measure(argv: list[str]) -> dict:
    """Run ``argv`` from a go-between process: wall seconds and the peak RSS of that one child."""
    # ru_maxrss is in KiB on Linux
    code = ("import json, resource, subprocess, sys, time\n"
            "t = time.perf_counter(); rc = subprocess.run(sys.argv[1:], capture_output=True).returncode\n"
            "print(json.dumps({'seconds': time.perf_counter() - t, 'rc': rc,"
            " 'rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True, timeout=900)
    return json.loads(out.stdout)


def header_seconds(path: Path) -> float:
    """``load_checkpoint`` alone, in a process that has imported torch and torchaudit already."""
    code = ("import sys, time\nfrom pathlib import Path\nfrom torchaudit.analyzer.load.checkpoint import load_checkpoint\n"
            "t = time.perf_counter(); c = load_checkpoint(Path(sys.argv[1])); print(time.perf_counter() - t, len(c.entries))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True, timeout=600)
    return float(out.stdout.split()[0])


def scan(folder: Path, path: Path, repeat: int) -> dict:
    report = folder / f"{path.stem}.json"
    runs = [measure([sys.executable, "-m", "torchaudit", "scan", str(folder / "tiny.py"), "--checkpoint", str(path),
                     "--json", str(report)]) for _ in range(repeat)]
    findings = json.loads(report.read_text())["findings"]
    return {"seconds": min(r["seconds"] for r in runs), "rss_mb": max(r["rss_mb"] for r in runs), "rc": runs[-1]["rc"],
            "file_bytes": path.stat().st_size, "findings": sorted(f["rule"] for f in findings)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tensors", type=int, default=80_000, help="tensors in the big safetensors header")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each scan: the best time is kept")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = write_files(folder, args.tensors)
        result: dict = {"tensors": args.tensors, "cases": {name: scan(folder, path, args.repeat) for name, path in files.items()}}
        result["header_seconds"] = min(header_seconds(files["big-header"]) for _ in range(args.repeat))
    cases = result["cases"]
    result["ok"] = (result["header_seconds"] < TARGET_HEADER_S and "TA307" in cases["stride-0"]["findings"]
                    and "TA307" not in cases["clean"]["findings"]
                    and all(c["seconds"] < TARGET_S and c["rss_mb"] < TARGET_MB and c["rc"] in (0, 1) for c in cases.values()))
    if args.json:
        print(json.dumps(result))
    else:
        floor = cases["clean"]
        print(f"{'case':<12} {'file':>10} {'scan':>8} {'over clean':>10} {'peak RSS':>10}  findings")
        for name, c in cases.items():
            print(f"{name:<12} {c['file_bytes']:>10,} {c['seconds']:>7.2f}s {c['seconds'] - floor['seconds']:>+9.2f}s "
                  f"{c['rss_mb']:>7.0f} MB  {', '.join(c['findings']) or '-'}")
        print(f"header part of {args.tensors:,} tensors (load_checkpoint): {result['header_seconds']:.2f} s")
        print(f"targets: scan < {TARGET_S:.0f} s and < {TARGET_MB:.0f} MB; header < {TARGET_HEADER_S:.0f} s; "
              f"TA307 on stride-0 only: {'met' if result['ok'] else 'MISSED'}")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
