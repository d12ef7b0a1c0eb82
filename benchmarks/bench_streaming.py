"""Weight streaming on a 1.1B-parameter Llama: peak memory and time of ``diff`` and ``scan --compare dtype``.

Writes two ``save_pretrained`` directories of a TinyLlama-1.1B-shaped ``LlamaForCausalLM``
(hidden 2048, intermediate 5632, 22 layers, 32 heads, 4 key-value heads, vocabulary 32,000:
1,100,048,384 float32 parameters, 4.4 GB each) into a temporary folder, without ever building
the model with values: the keys and shapes come from a meta-device build, and each
safetensors shard (2 GB, with ``model.safetensors.index.json``) is written tensor by tensor
(header first, then each tensor's bytes as it is drawn). Values: normal with std 0.02, seeded
per tensor (norm weights are ones, as transformers initialises them); B is A with
``model.layers.11.mlp.down_proj.weight`` scaled by 1.01, so the diff has one tensor to find.

Then each command runs in a fresh process (``commands`` builds them all), through a go-between
process that reports the wall time and the peak RSS of that one command
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``), and samples ``/proc/PID/status`` to say
how much of the peak was anonymous memory and how much mapped file pages; a command whose RSS
passes ``--rss-cap-gb``, or that leaves the machine under ``--min-available-gb``, is killed
(the figure is then a lower bound). Targets (issue 15, item 5):
``diff --stream-weights`` under 2.5 GB, ``scan --compare dtype --stream-weights`` under 3 GB
(decimal GB; the JSON's ``*_mb`` fields are MiB). The diff must also name the one tensor B
changed. ``--baseline`` also runs both commands without streaming; on a machine of 25.3 GB
(2 cores) both passed a 21.5 GB cap and were killed: ``diff`` 116 s in (13.5 GB anonymous +
8.1 GB mapped file pages), ``scan --compare dtype`` 123 s in (17.0 + 4.5 GB).

    python benchmarks/bench_streaming.py [--baseline] [--keep] [--dir /tmp] [--json]
    python benchmarks/bench_streaming.py --quick --json    # a tiny Llama: the smoke test's mode

``--quick`` writes a Llama of about 1 MB in shards of 100 KB, checks that
``torchaudit scan DIR --static-only`` finds no TA301-TA305 on it, and runs every command,
baselines included; its figures mean nothing, and it exits 0 when the directories are valid and
every command either ran or was refused for a flag this torchaudit does not have yet.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TINYLLAMA_1B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                    num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-5)
TINY = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=500, max_position_embeddings=256, rms_norm_eps=1e-5)
SHARD_BYTES, QUICK_SHARD_BYTES = 2 * 10**9, 100 * 10**3  # decimal, as save_pretrained's "2GB"
STD, SCALE = 0.02, 1.01
TARGETS_GB = {"diff": 2.5, "scan-dtype": 3.0}  # the streaming runs; others have no target
STREAM = "--stream-weights"
GB = 10**9  # every figure in GB is decimal, as the targets are


def _gb(mib: float) -> float:
    return mib * 2**20 / GB


# ---- the two directories -------------------------------------------------------------------

def llama_config(shape: dict[str, int]) -> Any:
    from transformers import LlamaConfig

    config = LlamaConfig(**shape, tie_word_embeddings=False, dtype="float32")
    config.architectures = ["LlamaForCausalLM"]  # save_pretrained of a model sets it; of a bare config, not
    return config


def state_shapes(config: Any) -> list[tuple[str, tuple[int, ...]]]:
    """The keys ``save_pretrained`` writes, in state-dict order, with their shapes, from a build
    on the meta device (no values). A tied tensor is written once, under its first key, and
    non-persistent buffers (rotary ``inv_freq``) are not in the state dict at all."""
    import torch
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    seen: set[int] = set()
    out = []
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            out.append((key, tuple(tensor.shape)))
    return out


def perturbed_key(config: Any) -> str:
    return f"model.layers.{config.num_hidden_layers // 2}.mlp.down_proj.weight"


def plan_shards(shapes: list[tuple[str, tuple[int, ...]]], shard_bytes: int) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Tensors in order, a new shard when the next one would pass ``shard_bytes`` (as save_pretrained)."""
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for key, shape in shapes:
        n = 4 * math.prod(shape)
        if shards[-1] and size + n > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((key, shape))
        size += n
    return shards


def _header(entries: list[tuple[str, tuple[int, ...]]]) -> bytes:
    """A safetensors header: 8-byte little-endian length, then JSON padded with spaces to 8 bytes."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key, shape in entries:
        n = 4 * math.prod(shape)
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _values(key: str, shape: tuple[int, ...], index: int, seed: int) -> Any:
    import torch

    if key.endswith("norm.weight"):
        return torch.ones(shape)
    generator = torch.Generator().manual_seed(seed * 100_003 + index)
    return torch.empty(shape).normal_(0.0, STD, generator=generator)


def write_pair(dir_a: Path, dir_b: Path, shape: dict[str, int], shard_bytes: int, seed: int = 0) -> dict[str, Any]:
    """Two save_pretrained directories, one tensor in memory at a time; B differs from A in one tensor."""
    from transformers import GenerationConfig

    config = llama_config(shape)
    shapes = state_shapes(config)
    shards = plan_shards(shapes, shard_bytes)
    names = (["model.safetensors"] if len(shards) == 1 else
             [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
    changed = perturbed_key(config)
    for folder in (dir_a, dir_b):
        folder.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(folder)
        GenerationConfig.from_model_config(config).save_pretrained(folder)
    index = 0
    for name, entries in zip(names, shards):
        with open(dir_a / name, "wb") as fa, open(dir_b / name, "wb") as fb:
            head = _header(entries)
            fa.write(head)
            fb.write(head)
            for key, tensor_shape in entries:
                values = _values(key, tensor_shape, index, seed)
                index += 1
                fa.write(memoryview(values.numpy()))  # little-endian float32, C order: safetensors' layout
                fb.write(memoryview((values * SCALE if key == changed else values).numpy()))
                del values
    total = sum(4 * math.prod(s) for _, s in shapes)
    if len(shards) > 1:
        weight_map = {key: name for name, entries in zip(names, shards) for key, _ in entries}
        meta = {"total_parameters": total // 4, "total_size": total}
        for folder in (dir_a, dir_b):
            (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": meta, "weight_map": weight_map}, indent=2))
    return {"parameters": total // 4, "bytes": total, "shards": len(shards), "tensors": len(shapes), "changed": changed}


# ---- the commands and how they are measured ------------------------------------------------

def commands(dir_a: Path, dir_b: Path, out: Path, baseline: bool) -> dict[str, list[str]]:
    """Every measured command, built here only. ``diff DIR_A DIR_B``: the model is built from A's
    config.json."""
    cli = [sys.executable, "-m", "torchaudit"]
    runs = {
        "diff": [*cli, "diff", str(dir_a), str(dir_b), STREAM],
        "scan-dtype": [*cli, "scan", str(dir_a), "--compare", "dtype", STREAM],
    }
    if baseline:  # the same commands without streaming: the figures before
        runs.update({f"{name}-baseline": [a for a in argv if a != STREAM] for name, argv in runs.items()})
    return {name: [*argv, "--json", str(out / f"{name}.json")] for name, argv in runs.items()}


def _go_between(cap_mb: float, floor_mb: float, argv: list[str]) -> None:
    """Runs in the go-between process: one command, its wall time, its peak RSS (ru_maxrss of
    this process's only child) and /proc samples of what made the peak. The command is killed
    when its RSS passes ``cap_mb``, or when the machine's available memory falls under
    ``floor_mb`` (others share it)."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        peak: dict[str, float] = {"VmRSS": 0.0}
        killed = None
        while proc.poll() is None:
            sample = _status_mb(f"/proc/{proc.pid}/status", ("VmRSS:", "RssAnon:", "RssFile:"))
            if sample.get("VmRSS", 0.0) > peak["VmRSS"]:
                peak = sample
            if killed is None and sample.get("VmRSS", 0.0) > cap_mb:
                killed = "cap"
            elif killed is None and _status_mb("/proc/meminfo", ("MemAvailable:",)).get("MemAvailable", 1e12) < floor_mb:
                killed = "low memory"
            if killed:
                proc.kill()
            time.sleep(0.1)
        seconds = time.perf_counter() - start
        err.seek(0)
        tail = err.read().decode(errors="replace")[-4000:]
    print(json.dumps({"seconds": seconds, "rc": proc.returncode, "killed": killed,
                      "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,  # KiB on Linux
                      "anon_mb_at_peak": peak.get("RssAnon"), "file_mb_at_peak": peak.get("RssFile"), "stderr": tail}))


def _status_mb(path: str, keys: tuple[str, ...]) -> dict[str, float]:
    """``Key: N kB`` lines of a /proc file, in MiB (empty once the process is gone)."""
    try:
        with open(path) as fh:
            fields = [line.split() for line in fh if line.startswith(keys)]
    except OSError:
        return {}
    return {f[0].rstrip(":"): int(f[1]) / 1024 for f in fields}


def measure(argv: list[str], cap_gb: float, floor_gb: float) -> dict[str, Any]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = subprocess.run([sys.executable, __file__, "--go-between", str(cap_gb * GB / 2**20), str(floor_gb * GB / 2**20), *argv],
                         capture_output=True, text=True, check=True, env=env)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["refused"] = refused_flag(result["rc"], result["stderr"])
    return result


def refused_flag(rc: int, stderr: str) -> str | None:
    """The option the command line refused (click's usage error, exit 2), if that is why it stopped."""
    if rc == 2 and "No such option" in stderr:
        return STREAM if STREAM in stderr else "an option"
    return None


def static_findings(folder: Path, out: Path) -> dict[str, Any]:
    """``torchaudit scan DIR --static-only``: the rules that fired (the directory must load: no TA301-TA305)."""
    report = out / "static.json"
    proc = subprocess.run([sys.executable, "-m", "torchaudit", "scan", str(folder), "--static-only", "--json", str(report)],
                          capture_output=True, text=True)
    data = json.loads(report.read_text()) if report.exists() else {}
    rules = sorted({f["rule"] for f in data.get("findings", [])})
    info = data.get("target", {}).get("checkpoint_info", {})
    return {"rc": proc.returncode, "rules": rules, "strict_load_ok": info.get("strict_load", {}).get("ok"),
            "stderr": proc.stderr[-2000:] if proc.returncode not in (0, 1) else ""}


def what_it_found(report: Path) -> dict[str, Any]:
    """From a run's JSON report: the tensors the diff says changed, each comparison's status and first divergence."""
    if not report.exists():
        return {}
    data = json.loads(report.read_text())
    changed = [r["key"] for r in data.get("tensor_diff", []) if r["status"] != "unchanged"]
    comps = {c["name"]: {"status": c["status"], "first": (c.get("first_divergence") or {}).get("module")}
             for c in data.get("comparisons", [])}
    return {"changed": changed, "comparisons": comps}


# ---- main ----------------------------------------------------------------------------------

def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    dir_a, dir_b = root / "llama-a", root / "llama-b"
    start = time.perf_counter()
    written = write_pair(dir_a, dir_b, TINY if args.quick else TINYLLAMA_1B, QUICK_SHARD_BYTES if args.quick else SHARD_BYTES)
    written["seconds"] = time.perf_counter() - start
    result: dict[str, Any] = {"quick": args.quick, "weights": written, "targets_gb": TARGETS_GB, "runs": {}}
    if args.quick:
        result["static"] = static_findings(dir_a, root)
    for name, argv in commands(dir_a, dir_b, root, baseline=args.baseline or args.quick).items():
        r = measure(argv, args.rss_cap_gb, args.min_available_gb)
        r["read_gb"] = written["bytes"] * (2 if name.startswith("diff") else 1) / GB  # diff reads both directories
        r["s_per_gb"] = r["seconds"] / r["read_gb"]
        r["found"] = what_it_found(root / f"{name}.json")
        r["command"] = " ".join(["torchaudit", *argv[3:]]).replace(str(root), "TMP")
        result["runs"][name] = r
    ran = {n: r for n, r in result["runs"].items() if r["rc"] in (0, 1) and not r["killed"]}
    # a diff must find the one tensor B changed, and nothing else
    found_it = all(r["found"].get("changed") == [written["changed"]] for n, r in ran.items() if n.startswith("diff"))
    if args.quick:
        static = result["static"]
        result["ok"] = (static["rc"] in (0, 1) and static["strict_load_ok"] is True
                        and not set(static["rules"]) & {"TA301", "TA302", "TA303", "TA304", "TA305"}
                        and all(n in ran or r["refused"] for n, r in result["runs"].items()) and found_it)
    else:
        result["ok"] = found_it and all(n in ran and _gb(ran[n]["rss_mb"]) < gb for n, gb in TARGETS_GB.items())
    return result


def report(result: dict[str, Any]) -> None:
    w = result["weights"]
    size = f"{w['bytes'] / GB:.2f} GB" if w["bytes"] >= GB / 10 else f"{w['bytes'] / 10**6:.2f} MB"
    print(f"weights: 2 x {size} float32 ({w['parameters']:,} parameters, {w['tensors']} tensors, "
          f"{w['shards']} shard(s) per directory), written in {w['seconds']:.0f} s; B changes {w['changed']}")
    if "static" in result:
        s = result["static"]
        print(f"scan A --static-only: exit {s['rc']}, strict load {'ok' if s['strict_load_ok'] else 'FAILED'}, "
              f"rules fired: {', '.join(s['rules']) or 'none'}")
    print(f"{'run':<20} {'wall':>8} {'peak RSS':>9} {'anon+file at peak':>18} {'s/GB read':>9}  {'target':>8}  verdict")
    for name, r in result["runs"].items():
        if r["refused"]:
            print(f"{name:<20} not measured: this torchaudit refuses {r['refused']} ({r['command']})")
            continue
        target = TARGETS_GB.get(name)
        rss_gb = _gb(r["rss_mb"])
        if r["killed"] == "cap":
            verdict = f"KILLED at the {result['cap_gb']:g} GB cap, {r['seconds']:.0f} s in: needs more"
        elif r["killed"]:
            verdict = f"KILLED at {rss_gb:.1f} GB: the machine fell under {result['min_available_gb']:g} GB available"
        elif r["rc"] not in (0, 1):
            verdict = f"FAILED, exit {r['rc']}: {r['stderr'].strip().splitlines()[-1] if r['stderr'].strip() else ''}"
        elif target is None or result["quick"]:
            verdict = "-"
        else:
            verdict = "met" if rss_gb < target else "MISSED"
        split = (f"{_gb(r['anon_mb_at_peak']):.2f}+{_gb(r['file_mb_at_peak']):.2f} GB"
                 if r["anon_mb_at_peak"] is not None else "-")
        print(f"{name:<20} {r['seconds']:>7.1f}s {rss_gb:>6.2f} GB {split:>18} {r['s_per_gb']:>9.2f}  "
              f"{f'< {target} GB' if target else '':>8}  {verdict}")
        found = r["found"]
        if found:
            comps = ", ".join(f"{k}: {v['status']}" + (f" first at {v['first']}" if v["first"] else "")
                              for k, v in found["comparisons"].items())
            changed = f"changed: {', '.join(found['changed']) or 'nothing'}; " if name.startswith("diff") else ""
            print(f"{'':<20} {changed}{comps or 'no comparison'}")
    print(f"verdict: {'OK' if result['ok'] else 'NOT MET'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tiny Llama (the smoke test): checks the directories, not the targets")
    ap.add_argument("--baseline", action="store_true", help="also scan --compare dtype without streaming (15 GB or more)")
    ap.add_argument("--rss-cap-gb", type=float, default=18.0, help="kill a command whose RSS passes this (default 18)")
    ap.add_argument("--min-available-gb", type=float, default=1.5,
                    help="kill a command when the machine's available memory falls under this (default 1.5)")
    ap.add_argument("--dir", default=None, help="where the temporary folder goes (default: the system's, /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the generated directories (their path is printed)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    if sys.argv[1:2] == ["--go-between"]:  # measure's own call: --go-between CAP_MB FLOOR_MB ARGV...
        _go_between(float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:])
        return 0
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_streaming_", dir=args.dir))
    try:
        result = run(args, root)
        result.update(cap_gb=args.rss_cap_gb, min_available_gb=args.min_available_gb, folder=str(root), kept=args.keep)
    finally:
        if args.keep:
            print(f"kept: {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
