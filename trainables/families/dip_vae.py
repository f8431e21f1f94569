"""DIP-VAE (Kumar et al. 2018, Eq. 6-9): reconstruction + KL + a penalty pushing the covariance of the
aggregate posterior towards the identity: lambda_od on the off-diagonal, lambda_d on the diagonal.

Type ``i`` penalises the covariance of the encoder means; type ``ii`` adds the mean encoder variance.
Locatello et al.: lambda_od in {1, 2, 5, 10, 20, 50}; lambda_d = 10 lambda_od (i) or lambda_od (ii).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from .. import losses
from ._autoencoder import AEConfig, GaussianVAE


class DIPVAEConfig(AEConfig):
    dip_type: Literal["i", "ii"] = "i"
    lambda_od: float = Field(default=10.0, ge=0, allow_inf_nan=False)
    """Weight of the squared off-diagonal covariance entries."""
    lambda_d: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Weight of the squared diagonal deviations from 1; None: 10 lambda_od (i), lambda_od (ii)."""

    @property
    def lambda_diagonal(self) -> float:
        if self.lambda_d is not None:
            return self.lambda_d
        return self.lambda_od * (10.0 if self.dip_type == "i" else 1.0)


class DIPVAE(GaussianVAE):
    name = "dip_vae"
    Config = DIPVAEConfig
    description = "DIP-VAE-I / -II (Kumar et al. 2018); dip_type, lambda_od, lambda_d"

    def regulariser(self, mean, logvar, z, step) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        kl = self.kl(mean, logvar)
        dip = losses.dip_vae_regulariser(
            mean, logvar, cfg.dip_type, cfg.lambda_od, cfg.lambda_diagonal
        )
        return {"kl": kl, "dip": dip, "regulariser": kl + dip}
