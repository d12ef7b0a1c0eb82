"""Peak memory of ``torchaudit diff DIR_A DIR_B --static-only``: the tensor table of two large
sharded save_pretrained directories.

Writes, in a temporary folder (``--dir``), two directories of a Llama config sized to about
``--size-mb`` of float32 weights each (default 2048), in ``--shards`` shards (default 4), one
tensor at a time (never the whole model in memory); B is A with a few tensors changed. Then runs
the CLI in a fresh subprocess and reads its peak RSS (``resource.getrusage(RUSAGE_CHILDREN)``,
``ru_maxrss``), and, for scale, the same command on two tiny directories of the same
architecture (the fixed cost: Python, torch, transformers, the model on the meta device). The
files are deleted at the end.

    python benchmarks/bench_diff_table.py                   # 2 x 2 GB, safetensors shards
    python benchmarks/bench_diff_table.py --format bin      # 2 x 2 GB, .bin shards (torch.save)
    python benchmarks/bench_diff_table.py --size-mb 200 --json
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HIDDEN, INTERMEDIATE, VOCAB = 2048, 5504, 8000
MIB = 1024 * 1024


def config(layers: int, hidden: int = HIDDEN, intermediate: int = INTERMEDIATE, vocab: int = VOCAB) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": max(1, hidden // 128),
        "num_key_value_heads": max(1, hidden // 128), "vocab_size": vocab, "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }


def shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """The state dict's keys and shapes of the config's model, built on the meta device."""
    import transformers

    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def tensor(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor of reproducible values for ``key``."""
    gen = torch.Generator().manual_seed(sum(map(ord, key)) * 7919 + len(key))
    return torch.randn(shape, generator=gen) * 0.02


def write_dir(folder: Path, cfg: dict, n_shards: int, fmt: str, changed: set[str]) -> None:
    """A save_pretrained-like directory: config.json, shards and their index; the tensors in
    ``changed`` are scaled by 1.5. Tensors are made and written one at a time."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    sizes = shapes(cfg)
    total = sum(math.prod(s) * 4 for s in sizes.values())
    groups: list[list[str]] = [[] for _ in range(n_shards)]
    at = 0
    for key, shape in sizes.items():
        groups[min(n_shards - 1, at * n_shards // total)].append(key)
        at += math.prod(shape) * 4
    ext = "safetensors" if fmt == "safetensors" else "bin"
    stem = "model" if fmt == "safetensors" else "pytorch_model"
    weight_map = {}
    for i, keys in enumerate(groups):
        name = f"{stem}-{i + 1:05d}-of-{n_shards:05d}.{ext}"
        weight_map.update({k: name for k in keys})
        made = ((k, tensor(k, sizes[k]) * (1.5 if k in changed else 1.0)) for k in keys)
        if fmt == "safetensors":
            _write_safetensors(folder / name, keys, sizes, made)
        else:
            torch.save(dict(made), folder / name)  # one shard in memory at a time: torch.save needs it whole
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / f"{stem}.{ext}.index.json").write_text(json.dumps(index))


def _write_safetensors(path: Path, keys: list[str], sizes: dict[str, tuple[int, ...]], made) -> None:  # noqa: ANN001
    header, offset = {}, 0
    for k in keys:
        n = math.prod(sizes[k]) * 4
        header[k] = {"dtype": "F32", "shape": list(sizes[k]), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for _, t in made:
            fh.write(t.numpy().tobytes())


def peak_rss_mb(args: list[str]) -> tuple[float, float, int]:
    """``(peak RSS of the command in MiB, seconds, exit code)``, in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "torchaudit", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode not in (0, 1):
        sys.stderr.write(done.stderr)
    # ru_maxrss of the children is the largest child's so far (KiB on Linux): run the big case last
    return max(after, before) / 1024, seconds, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=2048, help="float32 weights per directory, about")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--format", choices=("safetensors", "bin"), default="safetensors")
    parser.add_argument("--dir", default=None, help="where to write the directories (a temporary folder inside it)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()

    per_layer = 4 * (4 * HIDDEN * HIDDEN + 3 * HIDDEN * INTERMEDIATE)
    layers = max(1, round((args.size_mb * MIB - 2 * 4 * VOCAB * HIDDEN) / per_layer))
    big = config(layers)
    changed = {"model.layers.0.mlp.down_proj.weight", f"model.layers.{layers - 1}.self_attn.q_proj.weight", "lm_head.weight"}
    with tempfile.TemporaryDirectory(prefix="bench-diff-table-", dir=args.dir) as tmp:
        root = Path(tmp)
        tiny = config(2, hidden=64, intermediate=128, vocab=100)
        write_dir(root / "tiny_a", tiny, 2, args.format, set())
        write_dir(root / "tiny_b", tiny, 2, args.format, {"lm_head.weight"})
        start = time.perf_counter()
        write_dir(root / "a", big, args.shards, args.format, set())
        write_dir(root / "b", big, args.shards, args.format, changed)
        written = time.perf_counter() - start
        sizes = shapes(big)
        file_mb = sum(p.stat().st_size for p in (root / "a").iterdir()) / MIB
        largest_pair_mb = 2 * max(math.prod(s) for s in sizes.values()) * 4 / MIB
        report = root / "diff.json"
        base_rss, base_s, _ = peak_rss_mb(["diff", str(root / "tiny_a"), str(root / "tiny_b"), "--static-only", "--json", str(report)])
        rss, seconds, code = peak_rss_mb(["diff", str(root / "a"), str(root / "b"), "--static-only", "--json", str(report)])
        rows = json.loads(report.read_text())["tensor_diff"] if report.exists() else []
        found = sorted(r["key"] for r in rows if r["status"] == "changed")
        result = {
            "format": args.format, "shards": args.shards, "tensors": len(sizes), "file_mb_each": round(file_mb),
            "largest_tensor_pair_mb": round(largest_pair_mb), "peak_rss_mb": round(rss), "tiny_dirs_peak_rss_mb": round(base_rss),
            "table_over_tiny_mb": round(rss - base_rss), "seconds": round(seconds, 1), "tiny_seconds": round(base_s, 1),
            "write_seconds": round(written, 1), "exit_code": code, "changed_found": found == sorted(changed),
        }
    shutil.rmtree(root, ignore_errors=True)  # already gone with the TemporaryDirectory; the files are deleted
    if args.json:
        print(json.dumps(result))
        return
    print(f"two directories of {result['file_mb_each']:,} MiB each ({args.format}, {args.shards} shards, {len(sizes)} tensors; "
          f"largest tensor pair {result['largest_tensor_pair_mb']} MiB)")
    print(f"torchaudit diff A B --static-only: peak RSS {result['peak_rss_mb']:,} MiB in {result['seconds']} s "
          f"(exit {code}; the changed tensors found: {result['changed_found']})")
    print(f"the same on two tiny directories: peak RSS {result['tiny_dirs_peak_rss_mb']:,} MiB in {result['tiny_seconds']} s; "
          f"the table of the large ones adds {result['table_over_tiny_mb']:,} MiB")


if __name__ == "__main__":
    main()
