"""A user's own family: an MLP auto-encoder, written against the public ``trainables`` API only.

One ``Trainer`` subclass: its ``Config`` (the loop's settings plus its own), its modules, one
``train_step`` and ``encode`` / ``decode``. The study system gives it everything else: the data
view, batching, checkpoints and exact resume, scoring, pictures, the saved model and MLflow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from trainables import Output, TrainConfig, Trainer

SIDE = 64


class MLPAutoEncoderConfig(TrainConfig):
    latent_dim: int = Field(default=6, gt=0, le=512)
    hidden: int = Field(default=256, gt=0, le=8192)
    lr: float = Field(default=1e-3, gt=0)


class MLPAutoEncoder(Trainer):
    name = "mlp_ae"
    Config = MLPAutoEncoderConfig
    description = "an MLP auto-encoder (a user's own family, examples/byo_package)"
    # What its runs report beyond the metrics, and which way is better: reports and rankings read
    # this (the contract check refuses an output reported but not declared).
    outputs = (Output("reconstruction_mse", False, (0.0, 1.0), "test pixel MSE", primary=True),)
    pictures = ("traversals.png", "reconstructions.png", "umap.png")

    @classmethod
    def build_modules(cls, cfg: MLPAutoEncoderConfig, in_channels: int) -> dict[str, nn.Module]:
        pixels = in_channels * SIDE * SIDE
        return {
            "encoder": nn.Sequential(
                nn.Flatten(), nn.Linear(pixels, cfg.hidden), nn.ReLU(),
                nn.Linear(cfg.hidden, cfg.latent_dim),
            ),
            "decoder": nn.Sequential(
                nn.Linear(cfg.latent_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, pixels),
            ),
        }  # fmt: skip

    def setup(self, data: dict[str, Any], images: torch.Tensor) -> None:
        super().setup(data, images)
        self.optimizers["adam"] = torch.optim.Adam(self.modules.parameters(), lr=self.cfg.lr)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.modules["decoder"](self.modules["encoder"](x)).view_as(x)

    def train_step(self, batches: list[np.ndarray], phase: str, step: int) -> dict[str, float]:
        x = self.batch(batches[0])
        loss = F.binary_cross_entropy_with_logits(self._logits(x), x, reduction="sum") / len(x)
        self.backward_step(loss, self.optimizers["adam"])
        return {"loss": loss.item()}

    @torch.no_grad()
    def test_metrics(self, data: dict[str, Any]) -> dict[str, float]:
        x = self.batch(np.asarray(data["test"]))
        return {"reconstruction_mse": float(F.mse_loss(torch.sigmoid(self._logits(x)), x))}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.modules["encoder"](x), None

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.modules["decoder"](codes)).view(-1, self.in_channels, SIDE, SIDE)
