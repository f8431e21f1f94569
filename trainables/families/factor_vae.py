"""FactorVAE (Kim & Mnih 2018, Eq. 2 and Algorithm 1): reconstruction + KL + gamma * TC, where a
discriminator estimates the total correlation as the log density ratio of codes from q(z) against
codes from the product of its marginals (each dimension permuted across a second batch).

Two optimisers: the VAE's Adam, and the discriminator's Adam (1e-4, betas 0.5 / 0.9). Each step
consumes two batches: the VAE trains on the first; the discriminator compares the first batch's
codes with permuted codes of the second. Locatello et al.: gamma in {10, 20, 30, 40, 50, 100}.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from .. import losses
from ..nets import MLPDiscriminator
from ._autoencoder import AEConfig, GaussianVAE


class FactorVAEConfig(AEConfig):
    gamma: float = Field(default=10.0, ge=0, allow_inf_nan=False)
    """Weight of the discriminator's total-correlation estimate."""
    discriminator_hidden: tuple[int, ...] = (1000,) * 6
    discriminator_lr: float = Field(default=1e-4, gt=0, allow_inf_nan=False)
    discriminator_betas: tuple[float, float] = (0.5, 0.9)


class FactorVAE(GaussianVAE):
    name = "factor_vae"
    Config = FactorVAEConfig
    description = "FactorVAE (Kim & Mnih 2018); gamma = discriminator TC weight"
    batches_per_step = 2
    tiny_config = {"latent_dim": 4, "discriminator_hidden": (32, 32)}  # 6 x 1000: tested in losses

    @classmethod
    def build_modules(cls, cfg: FactorVAEConfig, in_channels: int) -> dict[str, nn.Module]:
        modules = super().build_modules(cfg, in_channels)
        modules["discriminator"] = MLPDiscriminator(cfg.latent_dim, cfg.discriminator_hidden)
        return modules

    def setup(self, data: dict[str, Any], images: torch.Tensor) -> None:
        super().setup(data, images)
        cfg = self.cfg
        self.optimizers["discriminator"] = torch.optim.Adam(
            self.modules["discriminator"].parameters(),
            lr=cfg.discriminator_lr,
            betas=cfg.discriminator_betas,
        )

    def regulariser(self, mean, logvar, z, step) -> dict[str, torch.Tensor]:
        kl = self.kl(mean, logvar)
        tc = losses.discriminator_tc(self.modules["discriminator"](z))
        return {"kl": kl, "tc": tc, "regulariser": kl + self.cfg.gamma * tc}

    def train_step(self, batches: list[np.ndarray], phase: str, step: int) -> dict[str, float]:
        first, second = batches
        terms = super().train_step([first], phase, step)  # the VAE's step (its own Adam)
        codes = self._last_codes.detach()  # (B, D) samples of q(z) from the first batch
        with torch.no_grad():
            mean, logvar = self.posterior(self.batch(second))
            permuted = losses.permute_dims(losses.sample_gaussian(mean, logvar))  # (B, D)
        discriminator = self.modules["discriminator"]
        loss = losses.discriminator_loss(discriminator(codes), discriminator(permuted))
        optimizer = self.optimizers["discriminator"]
        self.backward_step(loss, optimizer)  # also drops the grads the VAE step left here
        return {**terms, "discriminator": loss.item()}
