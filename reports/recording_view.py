"""Both environments of a comparison against a recording (``report.extras["recording"]``), side
by side: one view model for the terminal, Markdown and HTML (``scan --against``, ``compare``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torchaudit.report import Report, flat_environment

# the rows always shown, in this order; any other key that differs follows
_KEYS = ("torch", "python", "device", "device_name", "cuda_version", "cudnn_version", "transformers", "platform",
         "num_threads", "flags.allow_tf32_matmul", "flags.allow_tf32_cudnn", "flags.float32_matmul_precision",
         "flags.cudnn_benchmark", "flags.cudnn_deterministic", "flags.deterministic")


@dataclass(frozen=True)
class EnvRow:
    key: str
    recorded: str
    live: str
    differs: bool


@dataclass(frozen=True)
class RecordingView:
    labels: tuple[str, str]  # column heads: ("recorded", "live") or ("RUN_A", "RUN_B")
    sentence: str  # what was recorded and what differs, one sentence
    rows: tuple[EnvRow, ...]




def _text(v: Any) -> str:
    return "-" if v is None else str(v)


def recording_view(report: Report) -> RecordingView | None:
    """The view of ``report.extras["recording"]``, or ``None`` for a report without one."""
    data = report.extras.get("recording")
    if not data:
        return None
    envs = data.get("environments") or {}
    a, b = flat_environment(envs.get("recorded") or {}), flat_environment(envs.get("live") or {})
    differ = [d["key"] for d in data.get("environment_diff") or []]
    keys = [k for k in _KEYS if k in a or k in b] + [k for k in differ if k not in _KEYS]
    rows = tuple(EnvRow(k, _text(a.get(k)), _text(b.get(k)), k in differ) for k in keys)
    labels = tuple(data.get("labels") or ("recorded", "live"))
    cfg = data.get("config") or {}
    made = f"{cfg.get('device')}:{cfg.get('dtype')}:{cfg.get('mode')}"
    shown = [f"{k} {a.get(k)} \u2192 {b.get(k)}" for k in differ if k not in ("seed",)]
    weights = "" if data.get("weights_match") in (True, None) else "; the weights differ from the recording's"
    sentence = (f"Recording {data.get('path')} ({data.get('granularity')} granularity, {made}, made {data.get('created')}): "
                + (f"{len(shown)} environment difference{'s' if len(shown) != 1 else ''}: {'; '.join(shown)}" if shown
                   else "the same environment") + weights + ".")
    return RecordingView((str(labels[0]), str(labels[1])), sentence, rows)
