"""Convolutional encoders for 64x64 images.

``conv6``: the multi-task paper's encoder (Table 2): six 4x4 stride-2 convolutions with 32, 32, 64, 128,
256, 256 channels and ReLU (64 -> 1 pixel), then a dense layer to the code.
``conv4``: disentanglement_lib's encoder (Locatello et al. 2019, Table 1): 4x4 stride-2 convolutions
with 32, 32, 64, 64 channels, dense 256, then the code.
"""

from __future__ import annotations

import torch
from torch import nn

ENCODERS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    # name: (conv channels, dense hidden widths)
    "conv6": ((32, 32, 64, 128, 256, 256), ()),
    "conv4": ((32, 32, 64, 64), (256,)),
}
# Hidden activations: the multi-task paper's Table 2 uses ReLU; its Sec. 4.3 auto-encoders tanh.
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


class ConvEncoder(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_dim: int,
        arch: str = "conv6",
        out_activation: str = "none",
        activation: str = "relu",
    ):
        super().__init__()
        if arch not in ENCODERS:
            raise ValueError(f"unknown encoder {arch!r}; known: {sorted(ENCODERS)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
        act = ACTIVATIONS[activation]
        channels, hidden = ENCODERS[arch]
        layers: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            layers += [nn.Conv2d(previous, width, 4, stride=2, padding=1), act()]
            previous = width
        side = 64 // 2 ** len(channels)
        layers.append(nn.Flatten())
        previous = previous * side * side
        for width in hidden:
            layers += [nn.Linear(previous, width), act()]
            previous = width
        layers.append(nn.Linear(previous, out_dim))
        if out_activation == "tanh":
            layers.append(nn.Tanh())
        elif out_activation != "none":
            raise ValueError(f"unknown latent activation {out_activation!r}; use 'none' or 'tanh'")
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)  # (B, C, 64, 64) -> (B, out_dim)
