"""What a recording says about the machine that ran it, and what differs from this one.

A recorded run and a live one may differ in more than their numbers: the torch version, the
device, TF32 and cuDNN flags, the thread count. :func:`run_environment` is the scan's own
environment (``analyzer/environment.py``) plus the device the run used; :func:`environment_diff`
lists what differs between two, key by key, in the order a reader looks for them.
"""

from __future__ import annotations

import platform
from typing import Any

import torch

from torchaudit.analyzer.environment import environment
from torchaudit.report import flat_environment


def run_environment(device: str, seed: int) -> dict[str, Any]:
    """This process's environment for a run on ``device`` with ``seed``."""
    env = environment()
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    env["device"] = device
    env["device_name"] = torch.cuda.get_device_name(torch.device(device)) if cuda else (platform.processor() or platform.machine() or "cpu")
    env["cudnn_version"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    env["num_threads"] = torch.get_num_threads()
    env["seed"] = seed
    flags = dict(env.get("flags", {}))
    flags["cudnn_enabled"] = bool(torch.backends.cudnn.enabled)
    flags["cudnn_deterministic"] = bool(torch.backends.cudnn.deterministic)
    flags["fp16_reduced_precision_reduction"] = bool(torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction)
    flags["bf16_reduced_precision_reduction"] = bool(torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction)
    env["flags"] = flags
    return env


# the keys a reader compares first; any other key that differs follows, by name
_FIRST = ("torch", "python", "device", "device_name", "cuda_version", "cudnn_version", "transformers", "platform",
          "num_threads", "seed")


def environment_diff(recorded: dict[str, Any], live: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{"key", "recorded", "live"}]`` for every key (flags as ``flags.NAME``) whose values differ.
    A library version one run did not have loaded (``transformers``: ``None`` when the model did
    not import it, or another import had loaded it in that process) is not a difference."""
    a, b = flat_environment(recorded), flat_environment(live)
    keys = [k for k in _FIRST if k in a or k in b] + sorted((set(a) | set(b)) - set(_FIRST))
    return [{"key": k, "recorded": a.get(k), "live": b.get(k)} for k in keys
            if a.get(k) != b.get(k) and not (k in _IF_LOADED and None in (a.get(k), b.get(k)))]


_IF_LOADED = frozenset({"transformers"})  # versions reported only when the process had imported them


