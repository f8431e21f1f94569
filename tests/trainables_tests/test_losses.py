from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import logsumexp
from torch import nn
from torch.distributions import Normal, kl_divergence

from trainables.losses import (
    annealed_capacity,
    annealed_kl_penalty,
    dip_vae_regulariser,
    discriminator_loss,
    discriminator_tc,
    gaussian_kl,
    gaussian_log_density,
    permute_dims,
    reconstruction_loss,
    sample_gaussian,
    total_correlation,
)
from trainables.nets import DECODERS, ConvDecoder, MLPDiscriminator

# ---------------------------------------------------------------- decoders


@pytest.mark.parametrize("arch", sorted(DECODERS))
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("channels", [1, 3])
def test_decoder_output_shape(arch, activation, channels):
    torch.manual_seed(0)
    decoder = ConvDecoder(latent_dim=10, out_channels=channels, arch=arch, activation=activation)
    out = decoder(torch.randn(2, 10))
    assert out.shape == (2, channels, 64, 64)
    hidden_type = nn.ReLU if activation == "relu" else nn.Tanh
    other_type = nn.Tanh if activation == "relu" else nn.ReLU
    kinds = [type(m) for m in decoder.modules()]
    assert hidden_type in kinds and other_type not in kinds


def test_decoder_layouts_mirror_the_encoders():
    conv6 = ConvDecoder(10, 1, "conv6")
    widths = [m.out_channels for m in conv6.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert widths == [256, 128, 64, 32, 32, 1]
    conv4 = ConvDecoder(10, 3, "conv4")
    dense = [m.out_features for m in conv4.modules() if isinstance(m, nn.Linear)]
    widths = [m.out_channels for m in conv4.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert dense == [256, 4 * 4 * 64] and widths == [64, 32, 32, 3]


def test_decoder_rejects_unknown_names():
    with pytest.raises(ValueError, match="conv9"):
        ConvDecoder(10, 1, arch="conv9")
    with pytest.raises(ValueError, match="sigmoid"):
        ConvDecoder(10, 1, activation="sigmoid")


def test_mlp_discriminator_defaults():
    disc = MLPDiscriminator(10)
    assert disc(torch.randn(5, 10)).shape == (5, 2)
    linears = [m for m in disc.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears[:-1]] == [1000] * 6
    assert linears[-1].out_features == 2
    assert sum(isinstance(m, nn.LeakyReLU) for m in disc.modules()) == 6
    assert MLPDiscriminator(3, hidden=(8,), out_dim=4)(torch.randn(2, 3)).shape == (2, 4)


# ---------------------------------------------------------------- reconstruction


def test_bernoulli_matches_binary_cross_entropy():
    torch.manual_seed(0)
    logits = 3 * torch.randn(4, 3, 8, 8, dtype=torch.float64)
    target = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    reference = F.binary_cross_entropy(torch.sigmoid(logits), target, reduction="none")
    expected = reference.sum((1, 2, 3)).mean()
    got = reconstruction_loss(logits, target, "bernoulli")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_bernoulli_at_zero_logits_is_log2_per_pixel(value):
    target = torch.full((3, 2, 5, 7), value)
    got = reconstruction_loss(torch.zeros_like(target), target)
    assert got.item() == pytest.approx(2 * 5 * 7 * math.log(2), rel=1e-6)


def test_mse_hand_case():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]]).view(2, 1, 1, 2)
    target = torch.tensor([[1.0, 0.75], [0.0, 0.0]]).view(2, 1, 1, 2)
    # sigmoid: (0.5, 0.75) and (0.5, 0.5): per-sample sums 0.25 and 0.5
    got = reconstruction_loss(logits, target, "mse")
    assert got.item() == pytest.approx(0.375, abs=1e-6)


def test_reconstruction_rejects_unknown_kind():
    with pytest.raises(ValueError, match="laplace"):
        reconstruction_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), "laplace")


# ---------------------------------------------------------------- Gaussian KL and sampling


def test_gaussian_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mean, logvar = torch.randn(6, 4), torch.randn(6, 4)
    expected = kl_divergence(Normal(mean, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    torch.testing.assert_close(gaussian_kl(mean, logvar), expected, rtol=1e-5, atol=1e-6)
    assert gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max().item() == 0.0
    assert gaussian_kl(torch.ones(1, 1), torch.zeros(1, 1)).item() == pytest.approx(0.5)


def test_sample_gaussian_moments():
    torch.manual_seed(0)
    mean = torch.full((20000, 2), 3.0)
    logvar = torch.log(torch.tensor([[0.25, 4.0]])).expand(20000, 2)
    z = sample_gaussian(mean, logvar)
    assert z.shape == (20000, 2)
    torch.testing.assert_close(z.mean(0), torch.tensor([3.0, 3.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(z.var(0), torch.tensor([0.25, 4.0]), atol=0.0, rtol=0.05)


def test_gaussian_log_density_matches_normal():
    torch.manual_seed(0)
    samples, mean, logvar = torch.randn(5, 1, 3), torch.randn(1, 4, 3), torch.randn(1, 4, 3)
    expected = Normal(mean, torch.exp(0.5 * logvar)).log_prob(samples)
    got = gaussian_log_density(samples, mean, logvar)
    assert got.shape == (5, 4, 3)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- AnnealedVAE


def test_annealed_capacity_and_penalty():
    assert annealed_capacity(0, 25.0, 1000) == 0.0
    assert annealed_capacity(500, 25.0, 1000) == pytest.approx(12.5)
    assert annealed_capacity(1000, 25.0, 1000) == pytest.approx(25.0)
    assert annealed_capacity(5000, 25.0, 1000) == pytest.approx(25.0)
    gamma, capacity = 1000.0, 12.5
    for kl in (3.0, 20.0):
        got = annealed_kl_penalty(torch.tensor(kl), capacity, gamma)
        assert got.item() == pytest.approx(gamma * abs(kl - capacity))


# ---------------------------------------------------------------- DIP-VAE


def _whitened(batch: int, dims: int, seed: int) -> np.ndarray:
    """Rows whose biased (1/B) sample covariance is exactly the identity, with zero mean."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, dims))
    x -= x.mean(0)
    chol = np.linalg.cholesky(x.T @ x / batch)
    return np.linalg.solve(chol, x.T).T  # (B, D)


def test_dip_identity_covariance_gives_zero_penalty():
    mean = torch.from_numpy(_whitened(64, 3, seed=0))
    logvar = torch.full_like(mean, -40.0)  # posterior variance ~ 0
    for kind in ("i", "ii"):
        assert dip_vae_regulariser(mean, logvar, kind, 10.0, 100.0).item() == pytest.approx(
            0.0, abs=1e-9
        )


def test_dip_known_covariance():
    sigma = np.array([[2.0, 0.5], [0.5, 1.0]])
    white = _whitened(50, 2, seed=1)
    means_np = white @ np.linalg.cholesky(sigma).T  # biased covariance exactly sigma
    mean = torch.from_numpy(means_np)
    rng = np.random.default_rng(2)
    logvar_np = rng.normal(-1.0, 0.3, size=(50, 2))
    logvar = torch.from_numpy(logvar_np)
    lambda_od, lambda_d = 3.0, 7.0

    got_i = dip_vae_regulariser(mean, logvar, "i", lambda_od, lambda_d).item()
    assert got_i == pytest.approx(lambda_od * 2 * 0.25 + lambda_d * ((2 - 1) ** 2 + 0.0))

    cov = np.cov(means_np, rowvar=False, bias=True) + np.diag(np.exp(logvar_np).mean(0))
    off = cov - np.diag(np.diag(cov))
    expected_ii = lambda_od * (off**2).sum() + lambda_d * ((np.diag(cov) - 1) ** 2).sum()
    got_ii = dip_vae_regulariser(mean, logvar, "ii", lambda_od, lambda_d).item()
    assert got_ii == pytest.approx(expected_ii, rel=1e-10)

    with pytest.raises(ValueError, match="iii"):
        dip_vae_regulariser(mean, logvar, "iii", 1.0, 1.0)


# ---------------------------------------------------------------- beta-TCVAE


def _tiny_posterior(points: np.ndarray, seed: int) -> tuple[torch.Tensor, ...]:
    mean = torch.from_numpy(points)
    logvar = torch.full_like(mean, 2 * math.log(1e-3))  # std 1e-3 against a spacing of 1
    torch.manual_seed(seed)
    return sample_gaussian(mean, logvar), mean, logvar


def test_total_correlation_of_a_product_set_is_zero():
    xs, ys = np.arange(3.0), np.arange(4.0)
    grid = np.array([(x, y) for x in xs for y in ys])  # every combination: 12 points
    z, mean, logvar = _tiny_posterior(grid, seed=0)
    assert total_correlation(z, mean, logvar).item() == pytest.approx(0.0, abs=1e-6)


def test_total_correlation_of_duplicated_dimension_is_log_k():
    k, repeats = 4, 3
    first = np.repeat(np.arange(float(k)), repeats)[:, None]  # (12, 1)
    mean_1d = torch.from_numpy(first)
    logvar_1d = torch.full_like(mean_1d, 2 * math.log(1e-3))
    torch.manual_seed(0)
    z_1d = sample_gaussian(mean_1d, logvar_1d)
    # z2 = z1 exactly: the code carries the same discrete variable twice
    z, mean, logvar = (torch.cat([t, t], dim=1) for t in (z_1d, mean_1d, logvar_1d))
    assert total_correlation(z, mean, logvar).item() == pytest.approx(math.log(k), abs=1e-3)


def test_total_correlation_matches_numpy():
    rng = np.random.default_rng(0)
    batch, dims = 9, 3
    z, mean = rng.standard_normal((batch, dims)), rng.standard_normal((batch, dims))
    logvar = rng.normal(0.0, 0.5, size=(batch, dims))
    # log q(z_id | x_j) for all i, j, d, written out independently of the module
    diff = z[:, None, :] - mean[None, :, :]
    var = np.exp(logvar)[None, :, :]
    log_pairs = -0.5 * (diff**2 / var + np.log(2 * np.pi * var))  # (M, M, D)
    log_qz = logsumexp(log_pairs.sum(2), axis=1) - np.log(batch)
    log_prod = (logsumexp(log_pairs, axis=1) - np.log(batch)).sum(1)
    expected = float(np.mean(log_qz - log_prod))
    got = total_correlation(*(torch.from_numpy(a) for a in (z, mean, logvar))).item()
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-12)


# ---------------------------------------------------------------- FactorVAE


def test_permute_dims_permutes_each_column():
    torch.manual_seed(0)
    z = torch.randn(256, 4)
    shuffled = permute_dims(z)
    assert shuffled.shape == z.shape
    for d in range(4):
        torch.testing.assert_close(shuffled[:, d].sort().values, z[:, d].sort().values)
    # an output row kept intact would equal some input row in every column
    intact = (shuffled[:, None, :] == z[None, :, :]).all(-1).any(1)  # (256,)
    assert not bool(intact.all())
    assert int(intact.sum()) < 64


def test_discriminator_loss_at_uniform_logits_is_log2():
    zeros = torch.zeros(7, 2)
    assert discriminator_loss(zeros, zeros).item() == pytest.approx(math.log(2))
    assert discriminator_tc(zeros).item() == 0.0


def _correlated(batch: int, rho: float) -> torch.Tensor:
    x, noise = torch.randn(batch), torch.randn(batch)
    return torch.stack([x, rho * x + math.sqrt(1 - rho**2) * noise], dim=1)  # (B, 2)


def test_discriminator_estimates_total_correlation():
    torch.manual_seed(0)
    rho = 0.9
    true_tc = -0.5 * math.log(1 - rho**2)  # ~0.83 nats
    disc = MLPDiscriminator(2, hidden=(64, 64))
    optimiser = torch.optim.Adam(disc.parameters(), lr=1e-3)
    for _ in range(400):
        z = _correlated(256, rho)
        loss = discriminator_loss(disc(z), disc(permute_dims(z)))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        estimate = discriminator_tc(disc(_correlated(4096, rho))).item()
    assert estimate > 0
    assert estimate == pytest.approx(true_tc, abs=0.35)
