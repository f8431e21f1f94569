"""Task heads: the multi-task paper's Table 3, dense 300-300-300 with ReLU, then a linear output."""

from __future__ import annotations

import torch
from torch import nn


class MLPHead(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: tuple[int, ...] = (300, 300, 300)):
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_dim
        for width in hidden:
            layers += [nn.Linear(previous, width), nn.ReLU()]
            previous = width
        layers.append(nn.Linear(previous, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.net(codes)  # (B, in_dim) -> (B, out_dim)
