"""Convolutional decoders for 64x64 images and FactorVAE's code discriminator.

``conv6``: mirror of the multi-task paper's encoder (Table 2): a dense layer to 256 x 1 x 1, then six
4x4 stride-2 transposed convolutions with 256, 128, 64, 32, 32 and ``out_channels`` channels
(1 -> 64 pixels).
``conv4``: disentanglement_lib's deconvolutional decoder (Locatello et al. 2019, Table 1): dense 256,
dense 4*4*64, reshape to (64, 4, 4), then 4x4 stride-2 transposed convolutions with 64, 32, 32 and
``out_channels`` channels (4 -> 64 pixels).

Decoders return logits: the reconstruction loss decides between a Bernoulli likelihood on logits and
squared error on sigmoid outputs.

``MLPDiscriminator``: FactorVAE's discriminator (Kim & Mnih 2018, Appendix; disentanglement_lib):
six dense layers of 1000 leaky-ReLU units and two logits.
"""

from __future__ import annotations

import torch
from torch import nn

from .encoders import ACTIVATIONS as _ACTIVATIONS

DECODERS: dict[str, tuple[tuple[int, ...], tuple[int, ...], int]] = {
    # name: (dense hidden widths, transposed-conv channels before the output layer, start side)
    "conv6": ((), (256, 128, 64, 32, 32), 1),
    "conv4": ((256,), (64, 32, 32), 4),
}



class ConvDecoder(nn.Module):
    def __init__(
        self, latent_dim: int, out_channels: int, arch: str = "conv6", activation: str = "relu"
    ):
        super().__init__()
        if arch not in DECODERS:
            raise ValueError(f"unknown decoder {arch!r}; known: {sorted(DECODERS)}")
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"unknown decoder activation {activation!r}; known: {sorted(_ACTIVATIONS)}"
            )
        act = _ACTIVATIONS[activation]
        hidden, channels, side = DECODERS[arch]
        # the first transposed conv consumes the reshaped dense output, whose depth mirrors the
        # encoder's last conv (256 for conv6, 64 for conv4)
        start_channels = channels[0]
        dense: list[nn.Module] = []
        previous = latent_dim
        for width in hidden:
            dense += [nn.Linear(previous, width), act()]
            previous = width
        dense += [nn.Linear(previous, start_channels * side * side), act()]
        self.dense = nn.Sequential(*dense)
        self.start_shape = (start_channels, side, side)
        deconv: list[nn.Module] = []
        previous = start_channels
        for width in channels:
            deconv += [nn.ConvTranspose2d(previous, width, 4, stride=2, padding=1), act()]
            previous = width
        # no activation after the output layer: it emits logits
        deconv.append(nn.ConvTranspose2d(previous, out_channels, 4, stride=2, padding=1))
        self.deconv = nn.Sequential(*deconv)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        hidden = self.dense(codes)  # (B, latent_dim) -> (B, C0 * s * s)
        hidden = hidden.view(codes.shape[0], *self.start_shape)  # (B, C0, s, s)
        return self.deconv(hidden)  # (B, out_channels, 64, 64)


class MLPDiscriminator(nn.Module):
    def __init__(
        self,
        in_dim: int,
        hidden: tuple[int, ...] = (1000,) * 6,
        out_dim: int = 2,
        negative_slope: float = 0.2,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_dim
        for width in hidden:
            layers += [nn.Linear(previous, width), nn.LeakyReLU(negative_slope)]
            previous = width
        layers.append(nn.Linear(previous, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.net(codes)  # (B, in_dim) -> (B, out_dim)
