"""What every auto-encoder family shares (Locatello et al. 2019, Sec. 3 and Table 1 of its appendix).

A conv encoder gives the code (deterministic AE) or a diagonal Gaussian's mean and log-variance (the
VAE family), a conv decoder gives logits, and the loss is a reconstruction term (Bernoulli on logits
by default, or squared error) plus the family's regulariser. A family file sets the config fields
and implements ``regulariser``; FactorVAE adds its discriminator.
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
from ..core.trainer import Trainer
from ..nets import ConvDecoder, ConvEncoder

VAL_ROWS = 2048  # validation loss on at most this many rows: a cheap, fixed learning curve
RECONSTRUCTION_OUTPUTS = (
    Output("reconstruction_mse", False, (0.0, 1.0), "pixel MSE of the test images' reconstructions "
           "from their code means", primary=True),
    Output("reconstruction_loss", False, (0.0, None), "the training reconstruction loss (Bernoulli "
           "or squared error, summed over pixels) on the test split"),
)  # fmt: skip
# What ``core.artifacts`` draws for a family with a decoder, best first.
DECODER_PICTURES = ("traversals.png", "reconstructions.png", "umap.png")


class AEConfig(TrainConfig):
    """Locatello et al.'s settings: latent 10, batch 64, Adam 1e-4, Bernoulli loss, conv4 nets."""

    latent_dim: int = Field(default=10, gt=1)
    architecture: Literal["conv4", "conv6"] = "conv4"
    """``conv4``: disentanglement_lib's encoder/decoder; ``conv6``: the multi-task paper's Table 2."""
    activation: Literal["relu", "tanh"] = "relu"
    """Hidden activation of encoder and decoder (the multi-task paper's Sec. 4.3 also used tanh)."""
    reconstruction: Literal["bernoulli", "mse"] = "bernoulli"
    """Bernoulli log-likelihood on decoder logits, or squared error of sigmoid outputs."""
    epochs: int = Field(default=10, ge=0)
    adam_beta1: float = Field(default=0.9, gt=0, lt=1)
    adam_beta2: float = Field(default=0.999, gt=0, lt=1)


class AutoEncoder(Trainer):
    """Deterministic or Gaussian encoder + decoder; ``regulariser`` says what the family adds."""

    Config = AEConfig
    tiny_config = {"latent_dim": 4}
    outputs = RECONSTRUCTION_OUTPUTS
    pictures = DECODER_PICTURES

    @classmethod
    def build_modules(cls, cfg: AEConfig, in_channels: int) -> dict[str, nn.Module]:
        out = 2 * cfg.latent_dim if cls.stochastic else cfg.latent_dim  # mean and log-variance
        return {
            "encoder": ConvEncoder(in_channels, out, cfg.architecture, activation=cfg.activation),
            "decoder": ConvDecoder(cfg.latent_dim, in_channels, cfg.architecture, cfg.activation),
        }

    def autoencoder_parameters(self) -> list[nn.Parameter]:
        return [*self.modules["encoder"].parameters(), *self.modules["decoder"].parameters()]

    def setup(self, data: dict[str, Any], images: torch.Tensor) -> None:
        super().setup(data, images)
        cfg = self.cfg
        self.optimizers["adam"] = torch.optim.Adam(
            self.autoencoder_parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2)
        )

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean (B, D), log-variance (B, D) or None for a deterministic encoder)."""
        out = self.modules["encoder"](x)
        if not self.stochastic:
            return out, None
        mean, logvar = out.chunk(2, dim=1)
        return mean, logvar

    def regulariser(
        self, mean: torch.Tensor, logvar: torch.Tensor | None, z: torch.Tensor, step: int
    ) -> dict[str, torch.Tensor]:
        """Loss terms added to the reconstruction; key ``regulariser`` is the total added."""
        return {}

    def loss_terms(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mean, logvar = self.posterior(x)
        z = mean if logvar is None else losses.sample_gaussian(mean, logvar)  # (B, D)
        reconstruction = losses.reconstruction_loss(
            self.modules["decoder"](z), x, self.cfg.reconstruction
        )
        terms = {"reconstruction": reconstruction, **self.regulariser(mean, logvar, z, step)}
        self._last_codes = z
        return reconstruction + terms.get("regulariser", 0.0), terms

    def train_step(self, batches: list[np.ndarray], phase: str, step: int) -> dict[str, float]:
        loss, terms = self.loss_terms(self.batch(batches[0]), step)
        optimizer = self.optimizers["adam"]
        self.backward_step(loss, optimizer)
        return {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}}

    @torch.no_grad()
    def _split_loss(self, index: np.ndarray) -> dict[str, float]:
        """Reconstruction loss and pixel MSE of the code means over ``index`` (eval mode)."""
        if len(index) == 0:
            raise ValueError("cannot compute a reconstruction loss on an empty split")
        self.modules.eval()
        total, squared = 0.0, 0.0
        for start in range(0, len(index), 512):
            x = self.batch(index[start : start + 512])
            logits = self.modules["decoder"](self.posterior(x)[0])
            total += losses.reconstruction_loss(logits, x, self.cfg.reconstruction).item() * len(x)
            squared += ((torch.sigmoid(logits) - x) ** 2).mean(dim=(1, 2, 3)).sum().item()
        return {"reconstruction": total / len(index), "mse": squared / len(index)}

    def validate(self, data: dict[str, Any]) -> dict[str, float]:
        result = self._split_loss(np.asarray(data["val"])[:VAL_ROWS])
        return {"val/reconstruction": result["reconstruction"], "val/mse": result["mse"]}

    def test_metrics(self, data: dict[str, Any]) -> dict[str, float]:
        result = self._split_loss(np.asarray(data["test"]))
        return {"reconstruction_loss": result["reconstruction"], "reconstruction_mse": result["mse"]}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        mean, logvar = self.posterior(x)
        return mean, None if logvar is None else torch.exp(0.5 * logvar)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.modules["decoder"](codes))


class GaussianVAE(AutoEncoder):
    """A Gaussian encoder whose regulariser starts from the KL to N(0, I)."""

    stochastic = True

    def kl(self, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return losses.gaussian_kl(mean, logvar).sum(dim=1).mean()  # per-sample sum, batch mean
