"""Small models for the dynamic-stage tests, each with one known hazard."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class LinearBN(nn.Module):
    """Fully captured state: BatchNorm statistics live in the state dict."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(F.relu(self.bn(self.fc(x))))


class Counted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("seen", torch.zeros(1), persistent=False)

    def forward(self, x):
        if self.training:
            self.seen.add_(1.0)
        return x + self.seen


class NonPersistentBuffer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.count = Counted()
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        return self.out(self.count(self.fc(x)))


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.ones(6)  # a plain tensor attribute: not in the state dict

    def forward(self, x):
        if self.training:
            self.scale = self.scale * 1.5
        return x * self.scale


class TensorAttribute(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.scaler = Scaled()
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        return self.out(self.scaler(self.fc(x)))


class Calls(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0  # a Python counter read by forward

    def forward(self, x):
        if self.training:
            self.calls += 1
        return x * (1.0 + 0.1 * self.calls)


class PythonCounter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.head = Calls()
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        return self.out(self.head(self.fc(x)))


class AlwaysDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        return self.out(F.dropout(self.fc(x), 0.3))  # training= defaults to True


class BatchStats(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.norm = nn.BatchNorm1d(8, track_running_stats=False)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.norm(self.fc(x)))


class ExpOverflow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(4) * 20.0)
            self.fc.bias.zero_()

    def forward(self, x):
        h = self.fc(x)
        e = torch.exp(h)  # 20 * 1 -> exp(20) overflows float16
        return e / (1.0 + e)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        )
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))


class SmallTransformer(nn.Module):
    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.head = nn.Linear(dim, 4)

    def forward(self, x):
        h = self.embed(x)
        q, k, v = self.attn(self.norm1(h)).chunk(3, dim=-1)
        w = torch.softmax(q @ k.transpose(-2, -1) / 5.0, dim=-1)
        h = h + self.proj(w @ v)
        h = h + self.mlp(self.norm2(h))
        return self.head(h)


class CausalMask(nn.Module):
    """Attention with a causal mask built the way transformers builds it
    (``_prepare_4d_causal_attention_mask_with_cache_position``): ``finfo(dtype).min`` filled,
    ``triu``, then multiplied in place by a boolean. The float64 side's mask holds
    ``finfo(float64).min``, which no float32 can hold."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(8, 8)

    def forward(self, x):
        t = x.shape[1]
        mask = torch.full((t, t), torch.finfo(x.dtype).min, dtype=x.dtype).triu(1)
        mask *= torch.arange(t) > torch.arange(t).reshape(-1, 1)
        scores = self.q(x) @ x.transpose(1, 2) + mask
        return scores.softmax(-1)


class DeepResidual(nn.Module):
    """Forty residual MLP blocks: in bfloat16 every op rounds within its own tolerance, and the
    rounding adds up along the residual stream until the output is outside tolerance."""

    def __init__(self, dim: int = 32, depth: int = 40) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim)) for _ in range(depth))

    def forward(self, x):
        for block in self.blocks:
            x = x + block(x)
        return x


class ClampInHalf(nn.Module):
    """Takes another code path in float16, as transformers' T5 does (it clamps activations
    only when ``hidden_states.dtype == torch.float16``): the float16 graph has ops the float32
    graph lacks, before ops both have."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, 8)
        self.fc3 = nn.Linear(8, 4)

    def forward(self, x):
        h = self.fc1(x)
        if h.dtype == torch.float16:
            limit = torch.finfo(h.dtype).max - 1000
            h = torch.clamp(h, min=-limit, max=limit)
        h = torch.relu(h) + torch.relu(self.fc2(h))
        return self.fc3(torch.relu(h))


class NormThenOverflow(nn.Module):
    """A hand-written LayerNorm whose mean is near zero (a large relative error in float16 that
    rounding of its inputs explains), then a square that overflows float16 (the real cause)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.fc2 = nn.Linear(16, 16)
        with torch.no_grad():
            self.fc2.weight.mul_(200.0)

    def forward(self, x):
        h = self.fc(x)
        c = h - h.mean(-1, keepdim=True)
        drift = c.mean(-1, keepdim=True)  # about 1e-9 in float32: any rounding is a huge relative error
        h = (c - drift) / (c.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt()
        e = self.fc2(h).pow(2)
        return e.mean(-1)


class NeedsABatch(nn.Module):
    """BatchNorm without running statistics cannot normalize one sample alone: the per-sample
    reference of ``batch`` cannot run node ``bn``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.bn = nn.BatchNorm1d(8, track_running_stats=False)

    def forward(self, x):
        return self.bn(self.fc(x))
