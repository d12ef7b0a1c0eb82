"""Example inputs for a transformers model, synthesized from the model itself: its
``main_input_name`` and its config (the last source in inputs.py's order; ``--inputs`` and
``--input-shape`` win). A batch of two samples, so that the batch comparison can run.

* ``input_ids``: 2 x 16 token ids drawn within ``vocab_size`` (the global RNG, seeded by
  ``--seed``); ``decoder_input_ids`` too for an encoder-decoder model;
* ``pixel_values``: 2 x ``num_channels`` x ``image_size`` x ``image_size``, ``randn``;
* ``input_values`` (audio): 2 x 16,000 samples, one second at 16 kHz; ``input_features``:
  2 x ``num_mel_bins`` x (2 x ``max_source_positions``) frames, as Whisper's encoder expects;
* ``attention_mask`` of ones where the forward takes one, and ``use_cache=False`` where it
  takes that (a cache object is no activation to compare).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn as nn

from torchaudit.analyzer.dtypes import model_dtype

BATCH = 2  # samples: two, so the batch comparison (each sample alone vs the batch) can run
SEQUENCE = 16  # tokens
AUDIO = 16_000  # samples


def _config_value(config: Any, name: str) -> Any:
    value = getattr(config, name, None)
    if value is None and callable(getattr(config, "get_text_config", None)):
        value = getattr(config.get_text_config(), name, None)
    return value


def _main_input(config: Any, name: str, dtype: torch.dtype) -> tuple[torch.Tensor, str] | None:
    """The main input's tensor, and how it was made (for the report), or ``None``."""
    if name == "input_ids":
        vocab = _config_value(config, "vocab_size")
        if not isinstance(vocab, int) or vocab < 1:
            return None
        return torch.randint(0, vocab, (BATCH, SEQUENCE)), f"{SEQUENCE} token ids within vocab_size {vocab}"
    if name == "pixel_values":
        size, channels = _config_value(config, "image_size"), _config_value(config, "num_channels") or 3
        hw = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        if len(hw) != 2 or not all(isinstance(s, int) and s > 0 for s in hw):
            return None
        return torch.randn(BATCH, channels, *hw).to(dtype), f"image_size {size}, num_channels {channels}"
    if name == "input_values":
        return torch.randn(BATCH, AUDIO).to(dtype), f"{AUDIO} audio samples"
    if name == "input_features":
        bins, positions = _config_value(config, "num_mel_bins"), _config_value(config, "max_source_positions")
        if not isinstance(bins, int) or not isinstance(positions, int):
            return None
        return torch.randn(BATCH, bins, 2 * positions).to(dtype), f"num_mel_bins {bins}, {2 * positions} frames"
    return None


def transformers_inputs(model: nn.Module) -> tuple[dict[str, Any], str] | None:
    """Keyword arguments for a transformers model's forward and a sentence saying where they
    came from; ``None`` for another model, or a main input this module cannot synthesize."""
    name, config = getattr(model, "main_input_name", None), getattr(model, "config", None)
    if not isinstance(name, str) or config is None or not callable(getattr(config, "to_dict", None)):
        return None
    made = _main_input(config, name, model_dtype(model))
    if made is None:
        return None
    tensor, how = made
    try:
        takes = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        takes = {}  # type: ignore[assignment]  # nothing more than the main input
    kwargs: dict[str, Any] = {name: tensor}
    if name in ("input_ids", "input_values") and "attention_mask" in takes:
        kwargs["attention_mask"] = torch.ones(tensor.shape[:2], dtype=torch.long)
    if getattr(config, "is_encoder_decoder", False) and name == "input_ids" and "decoder_input_ids" in takes:
        kwargs["decoder_input_ids"] = tensor.clone()
    if "use_cache" in takes:
        kwargs["use_cache"] = False
    return kwargs, f"synthesized from {type(model).__name__}'s config ({name}: {how})"
