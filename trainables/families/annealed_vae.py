"""AnnealedVAE (Burgess et al. 2018, Eq. 8): reconstruction + gamma * |KL - C|, where the capacity C
grows linearly from 0 to c_max over ``iteration_threshold`` steps.

Locatello et al.: c_max in {5, 10, 25, 50, 75, 100}, gamma 1000, threshold 100,000 steps.
"""

from __future__ import annotations

import torch
from pydantic import Field

from .. import losses
from ._autoencoder import AEConfig, GaussianVAE


class AnnealedVAEConfig(AEConfig):
    c_max: float = Field(default=25.0, ge=0, allow_inf_nan=False)
    """Final KL capacity (nats)."""
    gamma: float = Field(default=1000.0, ge=0, allow_inf_nan=False)
    """Weight of the distance between the KL and the capacity."""
    iteration_threshold: int = Field(default=100_000, gt=0)
    """Optimiser steps over which the capacity grows from 0 to c_max."""


class AnnealedVAE(GaussianVAE):
    name = "annealed_vae"
    Config = AnnealedVAEConfig
    description = "AnnealedVAE (Burgess et al. 2018); capacity c_max reached after iteration_threshold"

    def regulariser(self, mean, logvar, z, step) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        kl = self.kl(mean, logvar)
        capacity = losses.annealed_capacity(step, cfg.c_max, cfg.iteration_threshold)
        penalty = losses.annealed_kl_penalty(kl, capacity, cfg.gamma)
        return {"kl": kl, "capacity": torch.tensor(capacity), "regulariser": penalty}
