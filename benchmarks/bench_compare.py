"""Cost of one lockstep comparison against the two plain forward passes it compares.

    python benchmarks/bench_compare.py [--repeat 5] [--kind dtype|same] [--default-malloc]

Models: a 12-layer pre-norm transformer (hidden 256, sequence 128, batch 8) and a BatchNorm CNN.
Comparison ``dtype``: reference float64, candidate float32 (the shadow runs in float32 on the
reference's inputs). ``same``: float32 against float32 (reload, determinism, checkpoints).

Each model is measured in one subprocess, its phases run in rounds (``--repeat`` of them) so
the ratios come from one run on a noisy machine: each round's time of a phase is divided by
the same round's plain forwards, and the median of those ratios is printed with their range
(a burst of noise then hits both sides of a ratio, where a fastest-of-N per phase would pair
one phase's lucky moment with another's unlucky one). Peak memory is the largest rise of the
process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` before each
phase) over its resident set when the phase starts.
``MALLOC_MMAP_THRESHOLD_`` is pinned so freed tensors go back to the OS at once, and one
phase's leftovers cannot hide the next one's peak. That makes every tensor of 64 KiB or more
its own ``mmap``, faulted in page by page and unmapped when freed, which costs the engine
(more tensors per node than a plain forward) more than glibc's defaults do: the times are the
conservative ones; ``--default-malloc`` times the defaults.

Four ways are measured: ``plain`` (the two forward passes, no comparison), ``lockstep`` (the
engine alone on graphs traced beforehand: reference, shadow and candidate per node, errors
measured, values freed after their last user), ``comparison`` (what one ``--compare`` costs:
``run_pair`` tracing both sides, then the engine; the model's own trace, which the scan makes
before any comparison, is made before the clock starts) and ``hooks`` (the obvious alternative:
forward hooks keep every module output of both runs, compared afterwards).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        w = F.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
        x = x + self.proj((w @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, layers: int = 12, dim: int = 256, heads: int = 8) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(x))


class CNN(nn.Module):
    def __init__(self, width: int = 64, depth: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


MODELS = {
    "transformer-12x256": (Transformer, (8, 128, 256)),
    "batchnorm-cnn": (CNN, (8, 3, 64, 64)),
}


def _rss() -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes."""
    vals = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, kb = line.split()[:2]
                vals[key] = int(kb) * 1024
    return vals["VmRSS:"], vals["VmHWM:"]


def _reset_peak() -> int:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _rss()[0]


def _setup(model_name: str, kind: str):
    from torchaudit.analyzer.load.inputs import ExampleInputs

    cls, shape = MODELS[model_name]
    torch.manual_seed(0)
    model = cls().eval()
    x = torch.randn(*shape)
    ref_dtype = torch.float64 if kind == "dtype" else torch.float32
    ref = cls().eval()
    ref.load_state_dict(model.state_dict())
    ref = ref.to(ref_dtype)
    return model, ref, ExampleInputs((x,)), ExampleInputs((x.to(ref_dtype),))


def phases(model_name: str, kind: str):
    """The measured phases of one model, each a function run with the clock on (set up in
    the child; the traces the scan makes before any comparison are made here, not timed)."""
    from torchaudit.analyzer.compare.lockstep import lockstep
    from torchaudit.analyzer.compare.metrics import Tolerance
    from torchaudit.analyzer.compare.pair import SideSpec, explainer, run_pair
    from torchaudit.analyzer.compare.sides import FxSide, RngStream
    from torchaudit.analyzer.trace.tracing import trace_model

    cand, ref, x_cand, x_ref = _setup(model_name, kind)
    tol = Tolerance.for_dtype(torch.float32)
    scanned = trace_model(cand, x_cand)  # the scan's own trace, made before any comparison
    g_ref = trace_model(ref, x_ref)
    explain = kind == "dtype"

    def plain() -> None:
        with torch.no_grad():
            ref(*x_ref.args)
            cand(*x_cand.args)

    def engine() -> None:
        a = FxSide(g_ref, x_ref, RngStream(0), ref.forward)
        b = FxSide(scanned, x_cand, RngStream(0), cand.forward)
        result = lockstep(a, b, tol, torch.float32, scanned, explain=explainer(torch.float32) if explain else None)
        assert result.nodes and result.first_divergence is None, result.first_divergence

    def comparison() -> None:
        # as comparisons.compare_configs builds it: the candidate is the model as scanned and runs that
        # graph; the reference (float64, or for same the worst case, reload's) is traced anew
        result, _ = run_pair(SideSpec(ref, x_ref), SideSpec(cand, x_cand, graph=scanned), tol, torch.float32, explain=explain)
        assert result.nodes and result.first_divergence is None, result.first_divergence

    return {"plain": plain, "lockstep": engine, "comparison": comparison, "hooks": lambda: _hooks_alternative(ref, cand, x_ref, x_cand)}


def measure(model_name: str, kind: str, repeat: int) -> dict[str, dict[str, list[float]]]:
    """Runs in the child: every phase ``repeat`` times, interleaved; each run's seconds and
    peak-memory rise."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    funcs = phases(model_name, kind)
    out: dict[str, dict[str, list[float]]] = {k: {"seconds": [], "peak_bytes": []} for k in funcs}
    for _ in range(repeat):
        for how, fn in funcs.items():
            base = _reset_peak()
            t0 = time.perf_counter()
            fn()
            out[how]["seconds"].append(time.perf_counter() - t0)
            out[how]["peak_bytes"].append(_rss()[1] - base)
    return out


def _hooks_alternative(ref: nn.Module, cand: nn.Module, x_ref, x_cand) -> None:
    """Keep every module output of both runs, then compare them pairwise."""
    from torchaudit.analyzer.compare.metrics import Tolerance, compare_values

    outs: list[dict[str, torch.Tensor]] = [{}, {}]
    for store, model, x in ((outs[0], ref, x_ref), (outs[1], cand, x_cand)):
        handles = [m.register_forward_hook(lambda mod, i, o, n=n, s=store: s.__setitem__(n, o))
                   for n, m in model.named_modules() if n]
        with torch.no_grad():
            model(*x.args)
        for h in handles:
            h.remove()
    tol = Tolerance.for_dtype(torch.float32)
    for name in outs[1]:
        compare_values(outs[0][name], outs[1][name], tol, torch.float32)


def child(model_name: str, kind: str, repeat: int, pinned: bool = True) -> dict[str, dict[str, list[float]]]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0") if pinned else dict(os.environ)
    out = subprocess.run([sys.executable, __file__, "--child", model_name, kind, str(repeat)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kind", choices=["dtype", "same"], default="dtype")
    parser.add_argument("--default-malloc", action="store_true",
                        help="time under glibc's own allocator settings (what users run with); the memory "
                             "figures then include what the allocator keeps after a free, so they mean little")
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        name, kind, repeat = args.child
        print(json.dumps(measure(name, kind, int(repeat))))
        return
    print(f"comparison kind: {args.kind} (reference {'float64' if args.kind == 'dtype' else 'float32'}, candidate float32); "
          f"allocator: {'glibc defaults' if args.default_malloc else 'mmap threshold pinned at 64 KiB'}")
    for name in MODELS:
        res = child(name, args.kind, args.repeat, pinned=not args.default_malloc)
        p = res["plain"]
        p_peak = max(p["peak_bytes"])
        print(f"\n{name}: two plain forwards {statistics.median(p['seconds']) * 1e3:.0f} ms (median), peak +{p_peak / 2**20:.0f} MiB")
        for how in ("lockstep", "comparison", "hooks"):
            r = res[how]
            # each run against the plain forwards of the same round: bursts of noise hit both
            ratios = sorted(t / base for t, base in zip(r["seconds"], p["seconds"]))
            peak = max(r["peak_bytes"])
            print(f"  {how:11s} time x{statistics.median(ratios):.2f} (rounds x{ratios[0]:.2f} to x{ratios[-1]:.2f})   "
                  f"peak +{peak / 2**20:4.0f} MiB  memory x{peak / max(p_peak, 1):.2f}")


if __name__ == "__main__":
    main()
