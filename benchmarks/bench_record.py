"""Bundle sizes of ``torchaudit record``: the bundled examples and a small transformers model, at
op and module granularity (README, Recordings).

    python benchmarks/bench_record.py [--json] [--no-transformers]

Each target is recorded into a scratch folder; the size is the shards' bytes as the manifest
counts them (the manifest itself is listed apart: it grows with the graph, not with the values).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LLAMA = '''
import torch
from transformers import LlamaConfig, LlamaForCausalLM


def build_model():
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, vocab_size=1000, max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()


def example_inputs():
    return {"input_ids": torch.randint(0, 1000, (1, 32), generator=torch.Generator().manual_seed(0))}
'''


def measure(target: str, granularity: str, folder: Path) -> dict[str, object]:
    from torchaudit.recording import record

    out = folder / f"{Path(target.split(':')[0]).stem}-{granularity}"
    start = time.perf_counter()
    manifest = record(target, str(out), granularity=granularity)
    return {
        "target": Path(target).name, "granularity": manifest["granularity"], "tracer": manifest["graph"]["tracer"],
        "parameters": manifest["fingerprint"]["parameters"],
        "recorded": sum(1 for n in manifest["graph"]["nodes"] if "value" in n), "tensors": manifest["tensors"],
        "shard_bytes": manifest["bytes"], "manifest_bytes": (out / "manifest.json").stat().st_size,
        "seconds": round(time.perf_counter() - start, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON line")
    parser.add_argument("--no-transformers", action="store_true", help="leave out the transformers model")
    args = parser.parse_args()
    targets = [str(p) for p in sorted((ROOT / "examples").glob("*.py"))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.no_transformers:
            try:
                import transformers  # noqa: F401 - only whether it is installed
            except ImportError:
                print("transformers is not installed: the Llama row is left out", file=sys.stderr)
            else:
                (folder / "tiny_llama.py").write_text(LLAMA)
                targets.append(str(folder / "tiny_llama.py"))
        for target in targets:
            for granularity in ("op", "module"):
                try:
                    rows.append(measure(target, granularity, folder))
                except Exception as exc:  # noqa: BLE001 - an example that needs inputs it lacks: say so, go on
                    print(f"{Path(target).name} ({granularity}): not recorded: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps({"rows": rows}))
        return 0
    print(f"{'target':<24} {'granularity':<11} {'tracer':<8} {'params':>9} {'values':>7} {'tensors':>8} {'shards':>12} {'manifest':>10}")
    for r in rows:
        print(f"{r['target']:<24} {r['granularity']:<11} {r['tracer']:<8} {r['parameters']:>9,} {r['recorded']:>7} "
              f"{r['tensors']:>8} {r['shard_bytes']:>10,} B {r['manifest_bytes']:>8,} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
