"""Write a tiny transformers Llama as ``save_pretrained`` would (config.json + model.safetensors),
built offline from a config with seeded random weights: a directory to try ``torchaudit scan DIR``
and ``--stream-weights`` on.

    python examples/tiny_llama_dir.py my-llama
"""

import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def main(folder: str) -> None:
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=100, architectures=["LlamaForCausalLM"])
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "my-llama")
