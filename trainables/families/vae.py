"""beta-VAE (Higgins et al. 2017, Eq. 4): reconstruction + beta * KL(q(z|x) || N(0, I)).

beta = 1 is the plain VAE (Kingma & Welling 2014). Locatello et al. sweep beta in {1, 2, 4, 6, 8, 16}.
"""

from __future__ import annotations

import torch
from pydantic import Field

from ._autoencoder import AEConfig, GaussianVAE


class VAEConfig(AEConfig):
    beta: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    """Weight of the KL term (1: the plain VAE)."""


class VAE(GaussianVAE):
    name = "vae"
    Config = VAEConfig
    description = "beta-VAE (Higgins et al. 2017); beta = KL weight"

    def regulariser(self, mean, logvar, z, step) -> dict[str, torch.Tensor]:
        kl = self.kl(mean, logvar)
        return {"kl": kl, "regulariser": self.cfg.beta * kl}
