"""Each auto-encoder family's loss, composed from terms whose values are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainables import get_family


def _trainer(name: str, **params):
    family = get_family(name)
    return family.trainer(family.Config(latent_dim=3, **params), 1, "cpu")


# A batch of two posteriors N(1, 1) per dim: KL per dim = 0.5 * (1 + 1 - 0 - 1) = 0.5, so the
# per-sample sum over 3 dims is 1.5 (and so is the batch mean).
MEAN = torch.ones(2, 3)
LOGVAR = torch.zeros(2, 3)
KL = 1.5


def test_ae_is_deterministic_with_no_regulariser():
    trainer = _trainer("ae")
    assert trainer.regulariser(MEAN, None, MEAN, 0) == {}
    mean, std = trainer.encode(torch.rand(2, 1, 64, 64))
    assert mean.shape == (2, 3) and std is None


@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_vae_regulariser_is_beta_times_kl(beta):
    terms = _trainer("vae", beta=beta).regulariser(MEAN, LOGVAR, MEAN, 0)
    assert terms["kl"].item() == pytest.approx(KL)
    assert terms["regulariser"].item() == pytest.approx(beta * KL)


def test_vae_encoder_gives_a_positive_std():
    mean, std = _trainer("vae").encode(torch.rand(4, 1, 64, 64))
    assert mean.shape == std.shape == (4, 3) and bool((std > 0).all())


@pytest.mark.parametrize(("step", "capacity"), [(0, 0.0), (50, 5.0), (100, 10.0), (500, 10.0)])
def test_annealed_vae_penalises_distance_to_the_growing_capacity(step, capacity):
    trainer = _trainer("annealed_vae", c_max=10.0, gamma=100.0, iteration_threshold=100)
    terms = trainer.regulariser(MEAN, LOGVAR, MEAN, step)
    assert terms["capacity"].item() == pytest.approx(capacity)
    assert terms["regulariser"].item() == pytest.approx(100.0 * abs(KL - capacity))


@pytest.mark.parametrize(("dip_type", "diagonal_weight"), [("i", 50.0), ("ii", 5.0)])
def test_dip_vae_regulariser_and_default_lambda_d(dip_type, diagonal_weight):
    trainer = _trainer("dip_vae", dip_type=dip_type, lambda_od=5.0)
    assert trainer.cfg.lambda_diagonal == diagonal_weight  # 10 lambda_od (i), lambda_od (ii)
    mean = torch.tensor([[1.0, 0.0, 2.0], [-1.0, 0.0, 0.0], [0.0, 3.0, 1.0], [0.0, -3.0, 1.0]])
    logvar = torch.log(torch.full((4, 3), 0.5))
    terms = trainer.regulariser(mean, logvar, mean, 0)
    # Independently: biased covariance of the means (+ mean variance 0.5 on the diagonal for ii).
    m = mean.numpy().astype(float)
    cov = (m - m.mean(0)).T @ (m - m.mean(0)) / len(m)
    if dip_type == "ii":
        cov += np.diag(np.full(3, 0.5))
    off = cov - np.diag(np.diag(cov))
    expected = 5.0 * (off**2).sum() + diagonal_weight * ((np.diag(cov) - 1) ** 2).sum()
    kl = 0.5 * (m**2 + 0.5 - math.log(0.5) - 1).sum(1).mean()
    assert terms["dip"].item() == pytest.approx(expected, rel=1e-5)
    assert terms["regulariser"].item() == pytest.approx(kl + expected, rel=1e-5)


def test_beta_tc_vae_adds_beta_minus_one_tc():
    torch.manual_seed(0)
    mean, logvar = torch.randn(16, 3), torch.randn(16, 3) * 0.1
    z = mean + torch.exp(0.5 * logvar) * torch.randn(16, 3)
    terms = _trainer("beta_tc_vae", beta=6.0).regulariser(mean, logvar, z, 0)
    expected = terms["kl"] + 5.0 * terms["tc"]
    assert terms["regulariser"].item() == pytest.approx(expected.item())


def test_factor_vae_tc_is_the_discriminators_log_density_ratio():
    trainer = _trainer("factor_vae", gamma=10.0, discriminator_hidden=(8,))
    last = trainer.modules["discriminator"].net[-1]  # the logits layer
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([1.0, -1.0]))  # logit "from q(z)" exceeds "permuted" by 2
    terms = trainer.regulariser(MEAN, LOGVAR, MEAN, 0)
    assert terms["tc"].item() == pytest.approx(2.0)  # positive: codes look dependent
    assert terms["regulariser"].item() == pytest.approx(KL + 10.0 * 2.0)


def test_factor_vae_trains_its_discriminator_with_its_own_optimiser():
    from trainables import DatasetConfig

    family = get_family("factor_vae")
    cfg = family.Config(latent_dim=3, discriminator_hidden=(16,), batch_size=4, pictures=False)
    view = DatasetConfig(subset={"scale": 0, "orientation": 0, "posX": "0:32:8", "posY": "0:32:8"})
    data = family.prepare_data(view, [cfg])
    trainer = family.trainer(cfg, 1, "cpu")
    trainer.setup(data, torch.from_numpy(data["images"]))
    vae_params = {id(p) for g in trainer.optimizers["adam"].param_groups for p in g["params"]}
    disc = list(trainer.modules["discriminator"].parameters())
    assert not vae_params & {id(p) for p in disc}
    before = [p.detach().clone() for p in disc]
    terms = trainer.train_step([np.arange(4), np.arange(4, 8)], "train", 0)
    assert {"loss", "reconstruction", "kl", "tc", "discriminator"} <= set(terms)
    assert any(not torch.equal(a, b) for a, b in zip(before, disc, strict=True))
