"""A small classifier with BatchNorm and Dropout, the layers whose behaviour depends on mode."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.bn = nn.BatchNorm1d(32)
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.fc1(x)))
        x = F.dropout(x, 0.1)  # always on: training= defaults to True
        return self.fc2(self.drop(x))


def example_inputs() -> torch.Tensor:
    return torch.randn(8, 16)
