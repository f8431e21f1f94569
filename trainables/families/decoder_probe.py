"""A decoder trained on a frozen representation (the multi-task paper, Section 4.2, Table 4, Figs. 6-7).

How much of the image a representation keeps: a transposed-conv decoder (the mirror of the
paper's encoder, Table 2) learns to reconstruct the images from the frozen upstream codes. The paper
trains 500 epochs, batch 64, Adam lr 2e-4 halved every 100 epochs, with squared error; we train with
the Bernoulli loss by default (``reconstruction: mse`` gives the paper's), because squared error of
sigmoid outputs leaves the decoder on dSprites' all-black plateau (measured: test error 0.042 after 8
epochs even on the true factors, against 0.005 with the Bernoulli loss). Errors are reported as
squared errors either way.

Reported: ``reconstruction_mse`` (mean squared error per pixel, intensities in [0, 1]) and
``reconstruction_sse`` (summed over an image's pixels and channels, then averaged over images) on the
test split. The paper's Table 4 mixes both scales (dSprites ~36-326 reads as a per-image sum;
Shapes3D and MPI3D ~0.001-0.08 as a per-pixel mean). Reconstructions and traversals of the upstream
codes through the trained decoder are the pictures (how a multi-task encoder gets traversals).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from .. import losses
from ..core.config import TrainConfig
from ..core.outputs import Output
from ..nets import ConvDecoder
from ._autoencoder import DECODER_PICTURES
from ._probe import GROUND_TRUTH, UPSTREAM_DOC, ProbeTrainer


class DecoderProbeConfig(TrainConfig):
    upstream: str = Field(default=GROUND_TRUTH, description=UPSTREAM_DOC)
    epochs: int = Field(default=500, ge=0)
    batch_size: int = Field(default=64, gt=0)
    lr: float = Field(default=2e-4, gt=0, allow_inf_nan=False)
    lr_halve_every: int = Field(default=100, gt=0)
    """Epochs between halvings of the learning rate."""
    decoder: Literal["conv6", "conv4"] = "conv6"
    decoder_activation: Literal["relu", "tanh"] = "relu"
    reconstruction: Literal["bernoulli", "mse"] = "bernoulli"
    """The training loss: the Bernoulli log-likelihood of the logits, or squared error of the
    sigmoid outputs (the paper's). The reported errors are squared errors either way."""


class DecoderProbe(ProbeTrainer):
    name = "decoder_probe"
    Config = DecoderProbeConfig
    description = "decoder on a frozen upstream representation: reconstruction error (4.2)"
    outputs = (
        Output("reconstruction_mse", False, (0.0, 1.0), "test pixel MSE (per pixel)", primary=True),
        Output("reconstruction_sse", False, (0.0, None), "test squared error summed per image"),
        Output("val/reconstruction_mse", False, (0.0, 1.0), "validation pixel MSE", curve=True),
    )
    pictures = DECODER_PICTURES

    def build_probe(self, code_dim: int) -> dict[str, nn.Module]:
        cfg = self.cfg
        return {
            "decoder": ConvDecoder(code_dim, self.in_channels, cfg.decoder, cfg.decoder_activation)
        }

    def setup(self, data: dict[str, Any], images: torch.Tensor) -> None:
        super().setup(data, images)
        optimizer = torch.optim.Adam(self.modules["decoder"].parameters(), lr=self.cfg.lr)
        self.optimizers["adam"] = optimizer
        self.schedulers["halve"] = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=self.cfg.lr_halve_every, gamma=0.5
        )

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.modules["decoder"](codes))

    def train_step(self, batches: list[np.ndarray], phase: str, step: int) -> dict[str, float]:
        (rows,) = batches
        logits = self.modules["decoder"](self.codes_of(rows))
        loss = losses.reconstruction_loss(logits, self.batch(rows), self.cfg.reconstruction)
        optimizer = self.optimizers["adam"]
        self.backward_step(loss, optimizer)
        return {"loss": loss.item()}

    @torch.no_grad()
    def squared_error(self, index: np.ndarray, batch: int = 512) -> tuple[float, float]:
        """(mean per pixel, mean per image of the summed) squared error over ``index``."""
        if len(index) == 0:
            raise ValueError("cannot compute a reconstruction error on an empty split")
        self.modules.eval()
        total = 0.0
        for start in range(0, len(index), batch):
            rows = index[start : start + batch]
            error = (self.decode(self.codes_of(rows)) - self.batch(rows)).double() ** 2
            total += error.sum().item()
        per_image = total / len(index)
        return per_image / float(np.prod(self.images.shape[1:])), per_image

    def validate(self, data: dict[str, Any]) -> dict[str, float]:
        return {"val/reconstruction_mse": self.squared_error(data["val"])[0]}

    def test_metrics(self, data: dict[str, Any]) -> dict[str, float]:
        mse, sse = self.squared_error(data["test"])
        return {"reconstruction_mse": mse, "reconstruction_sse": sse}
