"""Reconstruction and regulariser terms of the auto-encoder zoo.

Follows Locatello et al. 2019 ("Challenging Common Assumptions in the Unsupervised Learning of
Disentangled Representations", Sec. 3 and Appendix) and the original papers:

- VAE / beta-VAE: Gaussian posterior KL to N(0, I) (Kingma & Welling 2014, Appendix B;
  Higgins et al. 2017, Eq. 4).
- AnnealedVAE: ``gamma * |KL - C|`` with a capacity C grown linearly (Burgess et al. 2018, Eq. 8).
- DIP-VAE-I / -II: moment matching of the aggregate posterior's covariance (Kumar et al. 2018,
  Eq. 6-9).
- beta-TCVAE: minibatch estimate of the total correlation (Chen et al. 2018, Eq. 2 and Sec. 4.1).
- FactorVAE: dimension permutation and a discriminator's density-ratio estimate of the total
  correlation (Kim & Mnih 2018, Eq. 3 and Algorithm 2).

Conventions as in disentanglement_lib: per-sample sums over pixels / latent dimensions, mean over the
batch. Pure torch functions; importable without Ray or MLflow.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_LOG_2PI = math.log(2 * math.pi)


def reconstruction_loss(output: Tensor, target: Tensor, kind: str = "bernoulli") -> Tensor:
    """Per-sample reconstruction loss summed over pixels, mean over the batch.

    ``output`` are decoder logits (B, C, H, W); ``target`` lies in [0, 1]. ``"bernoulli"`` is the
    binary cross-entropy with logits, ``"mse"`` the squared error of ``sigmoid(output)``.
    """
    if kind == "bernoulli":
        # with-logits form is numerically stable for saturated logits
        per_pixel = F.binary_cross_entropy_with_logits(output, target, reduction="none")
    elif kind == "mse":
        per_pixel = (torch.sigmoid(output) - target) ** 2  # (B, C, H, W)
    else:
        raise ValueError(f"unknown reconstruction loss {kind!r}; known: ['bernoulli', 'mse']")
    return per_pixel.flatten(1).sum(1).mean()  # (B, C*H*W) -> (B,) -> ()


def sample_gaussian(mean: Tensor, logvar: Tensor) -> Tensor:
    """Reparameterised sample ``mean + exp(logvar / 2) * eps`` (Kingma & Welling 2014, Eq. 10)."""
    return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)  # (B, D)


def gaussian_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per dimension, (B, D) (Kingma & Welling 2014, App. B)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1)  # (B, D)


def annealed_capacity(step: int, c_max: float, iteration_threshold: int) -> float:
    """Burgess et al. 2018: capacity C grows linearly from 0 to ``c_max`` over
    ``iteration_threshold`` steps, then stays at ``c_max``."""
    if iteration_threshold <= 0:
        return float(c_max)
    return float(c_max) * min(max(step, 0) / iteration_threshold, 1.0)


def annealed_kl_penalty(kl_sum_mean: Tensor, capacity: float, gamma: float) -> Tensor:
    """AnnealedVAE regulariser ``gamma * |KL - C|`` (Burgess et al. 2018, Eq. 8); ``kl_sum_mean``
    is the KL summed over latent dimensions, mean over the batch."""
    return gamma * (kl_sum_mean - capacity).abs()


def _covariance(x: Tensor) -> Tensor:
    """Biased (1/B) covariance of the rows, as disentanglement_lib's compute_covariance_z_mean."""
    centred = x - x.mean(0, keepdim=True)  # (B, D)
    return centred.T @ centred / x.shape[0]  # (D, D)


def dip_vae_regulariser(
    mean: Tensor, logvar: Tensor, kind: str, lambda_od: float, lambda_d: float
) -> Tensor:
    """DIP-VAE penalty (Kumar et al. 2018, Eq. 6-9).

    Type ``"i"`` matches Cov[mean] to the identity; type ``"ii"`` matches the aggregate posterior's
    covariance Cov[mean] + E[diag(exp(logvar))]. Penalty: ``lambda_od`` times the sum of squared
    off-diagonal entries plus ``lambda_d`` times the sum of squared (diagonal - 1).
    """
    cov_z = _covariance(mean)  # (D, D)
    if kind == "ii":
        # law of total covariance: add the expected posterior variance
        cov_z = cov_z + torch.diag(logvar.exp().mean(0))  # (D, D)
    elif kind != "i":
        raise ValueError(f"unknown DIP-VAE type {kind!r}; known: ['i', 'ii']")
    diagonal = torch.diagonal(cov_z)  # (D,)
    off_diagonal = cov_z - torch.diag(diagonal)  # (D, D)
    return lambda_od * off_diagonal.pow(2).sum() + lambda_d * (diagonal - 1).pow(2).sum()


def gaussian_log_density(samples: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise log N(samples; mean, exp(logvar)), broadcasting over the arguments."""
    inv_var = torch.exp(-logvar)
    return -0.5 * ((samples - mean).pow(2) * inv_var + logvar + _LOG_2PI)


def total_correlation(z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """Minibatch estimate of the total correlation (Chen et al. 2018, Eq. 2 and Sec. 4.1).

    The batch's aggregate posterior q(z) = (1/M) sum_j q(z | x_j) serves as the density:
    log q(z_i) = logsumexp_j sum_d log q(z_id | x_j) - log M and
    log prod_d q(z_id) = sum_d [logsumexp_j log q(z_id | x_j) - log M]; the result is the mean over
    i of their difference (a scalar).

    disentanglement_lib omits the ``- log M`` terms, so its value differs from this one by the
    constant (D - 1) log M (same gradients). With this normalisation the value is the plug-in total
    correlation of the batch mixture.
    """
    log_m = math.log(z.shape[0])
    # log q(z_id | x_j) for every pair (i, j)
    log_qz_pairs = gaussian_log_density(
        z.unsqueeze(1), mean.unsqueeze(0), logvar.unsqueeze(0)
    )  # (M, M, D)
    log_qz = torch.logsumexp(log_qz_pairs.sum(2), dim=1) - log_m  # (M,)
    log_prod_qz = (torch.logsumexp(log_qz_pairs, dim=1) - log_m).sum(1)  # (M, D) -> (M,)
    return (log_qz - log_prod_qz).mean()


def permute_dims(z: Tensor) -> Tensor:
    """Shuffle each latent dimension independently across the batch (Kim & Mnih 2018, Alg. 1):
    samples from the product of the marginals of q(z). Returns (B, D)."""
    batch, dims = z.shape
    columns = [z[torch.randperm(batch, device=z.device), d] for d in range(dims)]  # D x (B,)
    return torch.stack(columns, dim=1)  # (B, D)


def discriminator_tc(logits: Tensor) -> Tensor:
    """FactorVAE's density-ratio estimate of TC, mean(logit_0 - logit_1) on codes from q(z)
    (Kim & Mnih 2018, Eq. 3); class 0 = "from q(z)", class 1 = "from the product of marginals"."""
    return (logits[:, 0] - logits[:, 1]).mean()  # (B, 2) -> ()


def discriminator_loss(logits_real: Tensor, logits_permuted: Tensor) -> Tensor:
    """Discriminator cross-entropy 0.5 * (CE(real, class 0) + CE(permuted, class 1))
    (Kim & Mnih 2018, Algorithm 2)."""
    zeros = torch.zeros(logits_real.shape[0], dtype=torch.long, device=logits_real.device)  # (B,)
    ones = torch.ones(logits_permuted.shape[0], dtype=torch.long, device=logits_permuted.device)
    return 0.5 * (F.cross_entropy(logits_real, zeros) + F.cross_entropy(logits_permuted, ones))
