"""InfoMEC (Hsu et al. 2023) on representations whose scores are known."""

from __future__ import annotations

import numpy as np
import pytest

from trainables.metrics.infomec import InfoMECScores, infomec

SIZES = (3, 4, 5)


@pytest.fixture
def grid() -> np.ndarray:
    """Every factor combination 5 times (300 points): factors exactly independent, so plug-in MI
    between different factors is exactly 0."""
    combos = np.stack(np.unravel_index(np.arange(np.prod(SIZES)), SIZES), axis=1)
    return np.tile(combos, (5, 1))


def _entropy(x: np.ndarray) -> float:
    p = np.unique(x, return_counts=True)[1] / len(x)
    return float(-(p * np.log(p)).sum())


def _nmi(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Plug-in I(c; f) / H(f) from entropies: H(c) + H(f) - H(c, f)."""
    out = np.empty((codes.shape[1], factors.shape[1]))
    for i, c in enumerate(codes.T):
        for j, f in enumerate(factors.T):
            joint = _entropy(c * 1000 + f)
            out[i, j] = (_entropy(c) + _entropy(f) - joint) / _entropy(f)
    return out


def _rescaled_share(m: np.ndarray) -> float:
    n = m.shape[1]
    return float(np.mean((m.max(axis=1) / m.sum(axis=1) - 1 / n) / (1 - 1 / n)))


def test_identity_discrete_codes(grid):
    scores = infomec(grid, grid, discrete_codes=True)
    assert isinstance(scores, InfoMECScores)
    np.testing.assert_allclose(scores.nmi, np.eye(len(SIZES)), atol=1e-12)
    assert scores.infom == pytest.approx(1.0)
    assert scores.infoc == pytest.approx(1.0)
    assert scores.infoe > 0.95
    assert scores.num_active == len(SIZES)


def test_identity_continuous_codes(grid, rng):
    codes = grid + rng.normal(0, 0.05, grid.shape)
    scores = infomec(codes, grid, rng=np.random.default_rng(1))
    assert scores.nmi.shape == (3, 3)
    assert np.all(np.diag(scores.nmi) > 0.8)
    assert np.all(scores.nmi[~np.eye(3, dtype=bool)] < 0.05)
    assert scores.infom > 0.95 and scores.infoc > 0.95 and scores.infoe > 0.95


def test_infoe_half_when_codes_hold_one_of_two_factors(grid):
    factors = grid[:, :2]
    scores = infomec(factors[:, [0]], factors, discrete_codes=True)
    # Factor 1 is independent of the code on the grid: its model is no better than the null.
    assert scores.infoe == pytest.approx(0.5, abs=0.02)
    # One active code: compactness is trivially 1 for the factor it holds, 0 for the other.
    assert scores.infoc == pytest.approx(0.5)


def test_permuting_codes_changes_nothing(grid, rng):
    order = [2, 0, 1]
    for discrete, codes in ((True, grid), (False, grid + rng.normal(0, 0.3, grid.shape))):
        base = infomec(codes, grid, discrete_codes=discrete, rng=np.random.default_rng(3))
        perm = infomec(codes[:, order], grid, discrete_codes=discrete, rng=np.random.default_rng(3))
        np.testing.assert_allclose(perm.nmi, base.nmi[order], atol=1e-12)
        assert perm.infom == pytest.approx(base.infom)
        assert perm.infoc == pytest.approx(base.infoc)
        assert perm.infoe == pytest.approx(base.infoe, abs=1e-3)


def test_mixing_two_factors_in_one_code_lowers_infom(grid):
    mixed = np.column_stack([grid[:, 0] * SIZES[1] + grid[:, 1], grid[:, 1], grid[:, 2]])
    scores = infomec(mixed, grid, discrete_codes=True)
    expected_nmi = _nmi(mixed, grid)
    np.testing.assert_allclose(scores.nmi, expected_nmi, atol=1e-10)
    assert scores.nmi[0, 0] == pytest.approx(1.0) and scores.nmi[0, 1] == pytest.approx(1.0)
    assert scores.infom == pytest.approx(_rescaled_share(expected_nmi))
    assert scores.infoc == pytest.approx(_rescaled_share(expected_nmi.T))
    # Code 0 splits its information evenly over 2 of 3 factors: (1/2 - 1/3) / (2/3) = 1/4.
    assert scores.infom == pytest.approx((0.25 + 1 + 1) / 3)
    assert scores.infom < infomec(grid, grid, discrete_codes=True).infom


def test_inactive_code_is_dropped(grid, rng):
    codes = grid + rng.normal(0, 0.05, grid.shape)
    flat = rng.uniform(0, 0.04 * np.ptp(codes, axis=0).max(), (len(grid), 1))
    with_flat = infomec(np.hstack([codes, flat]), grid, rng=np.random.default_rng(5))
    without = infomec(codes, grid, rng=np.random.default_rng(5))
    assert with_flat.num_active == 3 and without.num_active == 3
    assert with_flat.nmi.shape == (4, 3)  # the matrix keeps every code
    np.testing.assert_allclose(with_flat.nmi[:3], without.nmi, atol=1e-12)
    assert with_flat.infom == pytest.approx(without.infom)
    assert with_flat.infoc == pytest.approx(without.infoc)
    # Just above the threshold the same code counts.
    wide = infomec(np.hstack([codes, flat * 2]), grid, rng=np.random.default_rng(5))
    assert wide.num_active == 4

    constant = infomec(np.hstack([grid, np.zeros((len(grid), 1))]), grid, discrete_codes=True)
    assert constant.num_active == 3
    assert constant.infom == pytest.approx(1.0) and constant.infoc == pytest.approx(1.0)


def test_constant_codes_score_zero(grid):
    scores = infomec(np.ones((len(grid), 2)), grid)
    assert scores.num_active == 0
    assert (scores.infom, scores.infoc) == (0.0, 0.0)
    assert scores.infoe == pytest.approx(0.0, abs=1e-6)


def test_noise_codes(grid, rng):
    discrete = infomec(rng.integers(0, 4, grid.shape), grid, discrete_codes=True)
    assert discrete.infoe < 0.1
    assert discrete.infom < 0.5 and discrete.infoc < 0.5
    continuous = infomec(rng.normal(size=grid.shape), grid, rng=np.random.default_rng(0))
    assert continuous.infoe < 0.1
    # k-NN MI of noise is near 0, so the NMI is; InfoM/InfoC of such rows are noise-dominated.
    assert np.all(continuous.nmi < 0.05)


def test_reproducible_with_seed(grid):
    codes = grid.astype(float)  # ties: the k-NN estimate's jitter decides them
    first = infomec(codes, grid, rng=np.random.default_rng(7))
    again = infomec(codes, grid, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(first.nmi, again.nmi)
    assert first[:4] == again[:4]
    other = infomec(codes, grid, rng=np.random.default_rng(8))
    assert not np.array_equal(first.nmi, other.nmi)  # the seed reaches the estimator


def test_test_split_and_errors(grid, rng):
    codes = grid + rng.normal(0, 0.05, grid.shape)
    held_out = infomec(codes[:200], grid[:200], codes[200:], grid[200:], rng=rng)
    assert held_out.infoe > 0.9
    with pytest.raises(ValueError, match="both"):
        infomec(codes, grid, codes)
