"""Peak memory of checkpoint structure checks on a large safetensors file.

Writes a sparse safetensors file of ``--size-mb`` (default 4096) in ``--dir``, then, in a fresh
subprocess (so the figure is not polluted by this process's history), builds a matching model
on the meta device, loads the checkpoint with ``load_checkpoint`` and runs the structure rules
TA301-TA305, measuring the peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) before
and after. A control run reads every tensor, to show the measurement sees reads.

    python benchmarks/bench_checkpoint_header.py                  # 4 GB file
    python benchmarks/bench_checkpoint_header.py --size-mb 200 --json
"""

from __future__ import annotations

import argparse
import json
import resource
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

COLS = 1024  # float32 columns per row: each row is 4 KiB
N_TENSORS = 8


def write_sparse_safetensors(path: Path, size_mb: int) -> int:
    """A valid safetensors file of ``N_TENSORS`` float32 matrices, all zeros, written sparse."""
    rows = max(1, size_mb * 1024 * 1024 // (N_TENSORS * COLS * 4))
    header, offset = {}, 0
    for i in range(N_TENSORS):
        nbytes = rows * COLS * 4
        header[f"layers.{i}.weight"] = {"dtype": "F32", "shape": [rows, COLS], "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + offset)
    return rows


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(path: str, rows: int, mode: str) -> None:
    import torch
    import torch.nn as nn

    from torchaudit.analyzer.context import AuditContext
    from torchaudit.analyzer.load.checkpoint import load_checkpoint
    from torchaudit.rules.engine import load_rules

    with torch.device("meta"):
        model = nn.Module()
        # the last layer is one row short: TA304 must report it, so the rules really ran
        model.layers = nn.ModuleList(nn.Linear(COLS, rows - (i == N_TENSORS - 1), bias=False) for i in range(N_TENSORS))
    rules = load_rules()
    before = _maxrss_mb()
    ckpt = load_checkpoint(path)
    ctx = AuditContext(model=model, target=None, inputs=None, graph=None, environment={}, checkpoint=ckpt, meta=True)
    findings = [f.rule for code in ("TA301", "TA302", "TA303", "TA304", "TA305") for f in rules[code]().check(ctx)]
    kept = [ckpt.tensors[k].clone() for k in ckpt.tensors] if mode == "values" else []  # the control: real reads
    after = _maxrss_mb()
    print(json.dumps({"mode": mode, "before_mb": before, "after_mb": after, "delta_mb": after - before,
                      "findings": findings, "kept": len(kept)}))


def measure(path: Path, rows: int, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path), "--rows", str(rows), "--mode", mode],
        capture_output=True, text=True, check=True, timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=4096)
    ap.add_argument("--dir", default=None, help="where to write the file (default: a temporary folder)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--no-control", action="store_true", help="skip the control run that reads every tensor (skipped above 1 GB)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="header", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.rows, args.mode)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "big.safetensors"
        rows = write_sparse_safetensors(path, args.size_mb)
        size_mb = path.stat().st_size / 2**20
        result = {"file_mb": size_mb, "header": measure(path, rows, "header")}
        if not args.no_control and args.size_mb <= 1024:  # the control holds two copies in memory
            result["control"] = measure(path, rows, "values")
    if args.json:
        print(json.dumps(result))
        return
    h = result["header"]
    print(f"file: {size_mb:,.0f} MB safetensors ({N_TENSORS} tensors)")
    print(f"structure checks (TA301-TA305): peak RSS +{h['delta_mb']:.1f} MB, "
          f"{h['delta_mb'] / size_mb:.4f} of the file size; findings: {', '.join(h['findings']) or 'none'}")
    if "control" in result:
        c = result["control"]
        print(f"control, reading every tensor:   peak RSS +{c['delta_mb']:.1f} MB, {c['delta_mb'] / size_mb:.2f} of the file size")


if __name__ == "__main__":
    main()
