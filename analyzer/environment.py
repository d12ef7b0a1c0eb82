"""The environment a scan ran in: versions and the process-wide numeric flags."""

from __future__ import annotations

import platform
import sys
from typing import Any

import torch


def environment() -> dict[str, Any]:
    """Versions (``transformers`` too, when the model came from it) and numeric flags."""
    transformers = sys.modules.get("transformers")
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "transformers": getattr(transformers, "__version__", None) if transformers else None,
        "platform": platform.platform(terse=True),
        "flags": {
            "allow_tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "allow_tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "deterministic": bool(torch.are_deterministic_algorithms_enabled()),
            "default_dtype": str(torch.get_default_dtype()).removeprefix("torch."),
        },
    }
