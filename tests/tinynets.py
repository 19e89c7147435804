"""A two-layer network small enough for float64 finetuning tests (imported by the finetune tests)."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """6 inputs → 12 tanh units → 3 classes."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(6, 12)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        return self.fc(torch.tanh(self.hidden(x)))


def classification_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` float64 inputs for TinyNet and labels in {0, 1, 2}, from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return x, y
