"""Start-up time of ``torchaudit --version`` and ``torchaudit --help``, and a check that
neither imports torch.

Each command runs in a fresh interpreter several times; the fastest run counts. The figures
are also printed as a ratio to a bare ``python -c pass`` measured in the same run (these
machines are noisy). Target (DESIGN.md, Performance): under 0.5 s, torch not imported.

    python benchmarks/bench_startup.py [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

TARGET_S = 0.5
_PROBE = """
import sys
from torchaudit.cli import main
sys.argv = ["torchaudit", {flag!r}]
try:
    main()
except SystemExit:
    pass
print("TORCH_IMPORTED", "torch" in sys.modules, file=sys.stderr)
"""


def fastest(cmd: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        best = min(best, time.perf_counter() - start)
    return best


def torch_imported(flag: str) -> bool:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(flag=flag)], capture_output=True, text=True, check=True)
    return "TORCH_IMPORTED True" in out.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    bare = fastest([sys.executable, "-c", "pass"], args.repeat)
    rows = []
    for flag in ("--version", "--help"):
        seconds = fastest([sys.executable, "-m", "torchaudit", flag], args.repeat)
        rows.append({"command": f"torchaudit {flag}", "seconds": seconds, "vs_bare_python": seconds / bare,
                     "torch_imported": torch_imported(flag)})
    ok = all(r["seconds"] < TARGET_S and not r["torch_imported"] for r in rows)
    if args.json:
        print(json.dumps({"bare_python_s": bare, "rows": rows, "target_s": TARGET_S, "ok": ok}))
    else:
        print(f"bare python start-up: {bare:.3f} s")
        for r in rows:
            print(f"{r['command']:<20} {r['seconds']:.3f} s  ({r['vs_bare_python']:.1f}x bare python)  "
                  f"torch imported: {'YES' if r['torch_imported'] else 'no'}")
        print(f"target: < {TARGET_S} s without importing torch: {'OK' if ok else 'OVER'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
