"""Write a safetensors file whose header is real and whose data is a hole (a sparse file).

The header JSON lists every key with its dtype, shape and ``data_offsets`` exactly as
safetensors lays them out; the file is then extended to its full length with ``os.truncate``
without writing a byte of data, so a 27 GB checkpoint costs a few kilobytes of disk.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Mapping, Sequence

SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I8": 1, "U8": 1, "BOOL": 1}


def write_sparse_safetensors(path: Path, tensors: Mapping[str, tuple[Sequence[int], str]]) -> int:
    """``tensors``: key -> (shape, safetensors dtype code). Returns the file's full length."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key, (shape, dtype) in tensors.items():
        nbytes = math.prod(shape) * SIZES[dtype]
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes with spaces
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)))
        fh.write(text)
    total = 8 + len(text) + offset
    os.truncate(path, total)
    return total


def llama_tensors(
    vocab: int = 32000, hidden: int = 4096, intermediate: int = 11008, layers: int = 32, kv_hidden: int = 4096, dtype: str = "F32"
) -> dict[str, tuple[tuple[int, ...], str]]:
    """The state-dict layout of transformers' LlamaForCausalLM (defaults: LlamaConfig())."""
    out: dict[str, tuple[tuple[int, ...], str]] = {"model.embed_tokens.weight": ((vocab, hidden), dtype)}
    for i in range(layers):
        p = f"model.layers.{i}."
        out[p + "self_attn.q_proj.weight"] = ((hidden, hidden), dtype)
        out[p + "self_attn.k_proj.weight"] = ((kv_hidden, hidden), dtype)
        out[p + "self_attn.v_proj.weight"] = ((kv_hidden, hidden), dtype)
        out[p + "self_attn.o_proj.weight"] = ((hidden, hidden), dtype)
        out[p + "mlp.gate_proj.weight"] = ((intermediate, hidden), dtype)
        out[p + "mlp.up_proj.weight"] = ((intermediate, hidden), dtype)
        out[p + "mlp.down_proj.weight"] = ((hidden, intermediate), dtype)
        out[p + "input_layernorm.weight"] = ((hidden,), dtype)
        out[p + "post_attention_layernorm.weight"] = ((hidden,), dtype)
    out["model.norm.weight"] = ((hidden,), dtype)
    out["lm_head.weight"] = ((vocab, hidden), dtype)
    return out
