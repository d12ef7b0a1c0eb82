"""A model that torch.fx cannot trace: Python control flow that depends on tensor values.

torchaudit falls back along its tracer chain (torch.export, then forward hooks) and says
what the fallback loses.
"""

import torch
import torch.nn as nn


class EarlyExit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.deep = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        if h.mean() > 0.5:  # data-dependent: fx and torch.export both refuse this
            h = self.deep(h)
        return self.head(h.mean(dim=(2, 3)))


def example_inputs() -> torch.Tensor:
    return torch.randn(2, 3, 16, 16)
