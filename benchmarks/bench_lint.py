"""Time per file of ``torchaudit lint``, and a check that it never imports torch.

Each command runs the installed console script's code (``torchaudit.cli:main``) in a fresh
interpreter, as pre-commit runs it, several times; the fastest run counts. Cases: one small
model file (what a commit touching one file costs, start-up included), the repository's
``examples/`` and ``tests/fixtures/`` together (start-up spread over many files), and a large
real modeling file (transformers' ``models/llama/modeling_llama.py`` from site-packages, when
transformers is installed). A bare ``python -c pass`` and ``torchaudit --version`` measured in
the same run put the figures in proportion (these machines are noisy). Target (DESIGN.md,
Performance): under 0.3 s per file, torch not imported.

    python benchmarks/bench_lint.py [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 0.3
_RUN = """
import sys
sys.argv = ["torchaudit", *{argv!r}]
from torchaudit.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
print("TORCH_IMPORTED", "torch" in sys.modules, file=sys.stderr)
"""


def fastest(cmd: list[str], repeat: int) -> tuple[float, str]:
    best, err = float("inf"), ""
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        best = min(best, time.perf_counter() - start)
        err = done.stderr
    return best, err


def python_files(paths: list[Path]) -> int:
    from torchaudit.lint import expand

    return sum(1 for _ in expand(paths))


def cases() -> list[tuple[str, list[Path]]]:
    out = [("one model file (examples/mlp_bn_dropout.py)", [ROOT / "examples" / "mlp_bn_dropout.py"]),
           ("examples/ and tests/fixtures/", [ROOT / "examples", ROOT / "tests" / "fixtures"])]
    spec = importlib.util.find_spec("transformers")
    if spec is not None and spec.origin is not None:
        llama = Path(spec.origin).parent / "models" / "llama" / "modeling_llama.py"
        if llama.is_file():
            out.append(("transformers modeling_llama.py", [llama]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    bare, _ = fastest([sys.executable, "-c", "pass"], args.repeat)
    version, _ = fastest([sys.executable, "-c", _RUN.format(argv=["--version"])], args.repeat)
    rows = []
    for name, paths in cases():
        argv = ["lint", *map(str, paths)]
        seconds, err = fastest([sys.executable, "-c", _RUN.format(argv=argv)], args.repeat)
        files = python_files(paths)
        lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in paths if p.is_file())
        rows.append({"case": name, "files": files, "lines": lines or None, "seconds": seconds, "per_file_s": seconds / files,
                     "vs_bare_python": seconds / bare, "torch_imported": "TORCH_IMPORTED True" in err})
    ok = all(r["per_file_s"] < TARGET_S and not r["torch_imported"] for r in rows)
    if args.json:
        print(json.dumps({"bare_python_s": bare, "version_s": version, "rows": rows, "target_s": TARGET_S, "ok": ok}))
    else:
        print(f"bare python start-up: {bare:.3f} s; torchaudit --version: {version:.3f} s")
        for r in rows:
            size = f", {r['lines']} lines" if r["lines"] else ""
            print(f"{r['case']:<46} {r['files']:>3} files{size}: {r['seconds']:.3f} s, {r['per_file_s']:.3f} s per file "
                  f"({r['vs_bare_python']:.1f}x bare python)  torch imported: {'YES' if r['torch_imported'] else 'no'}")
        print(f"target: < {TARGET_S} s per file without importing torch: {'OK' if ok else 'OVER'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
