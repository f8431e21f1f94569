"""beta-TCVAE (Chen et al. 2018, Eq. 4): reconstruction + KL + (beta - 1) * TC, the total correlation
of the aggregate posterior estimated on the minibatch (``losses.total_correlation``).

beta = 1 is the plain VAE. Locatello et al. sweep beta in {1, 2, 4, 6, 8, 10}.
"""

from __future__ import annotations

import torch
from pydantic import Field

from .. import losses
from ._autoencoder import AEConfig, GaussianVAE


class BetaTCVAEConfig(AEConfig):
    beta: float = Field(default=6.0, ge=0, allow_inf_nan=False)
    """Weight of the total correlation (the KL's other parts keep weight 1)."""


class BetaTCVAE(GaussianVAE):
    name = "beta_tc_vae"
    Config = BetaTCVAEConfig
    description = "beta-TCVAE (Chen et al. 2018); beta = total-correlation weight"

    def regulariser(self, mean, logvar, z, step) -> dict[str, torch.Tensor]:
        kl = self.kl(mean, logvar)
        tc = losses.total_correlation(z, mean, logvar)
        return {"kl": kl, "tc": tc, "regulariser": kl + (self.cfg.beta - 1.0) * tc}
