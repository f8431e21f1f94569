"""The Spearman matching of code dimensions to factors (multi-task paper, Table 7): known cases and
every correlation against scipy computed pair by pair."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from trainables.metrics.spearman_match import spearman_match


def _factors(rng, n=600):
    return np.column_stack([rng.integers(0, 3, n), rng.integers(0, 6, n), rng.integers(0, 16, n)])


def test_codes_that_are_the_factors_find_every_factor(rng):
    factors = _factors(rng)
    codes = 2.0 * factors[:, [2, 0, 1]] - 1.0  # permuted, monotone: the same ranks, ties too
    match = spearman_match(codes, factors)
    assert match.factors_found == 3
    assert match.matched.tolist() == [2, 0, 1]
    assert match.mean_rho == pytest.approx(1.0, abs=1e-3)


def test_constant_codes_match_nothing(rng):
    match = spearman_match(np.zeros((200, 4)), _factors(rng, 200))
    assert match.factors_found == 0 and match.mean_rho == 0.0
    assert (match.matched == -1).all()


def test_every_correlation_and_match_against_scipy(rng):
    factors = _factors(rng)
    codes = np.column_stack([
        np.tanh(factors[:, 1] - 2.5) + rng.normal(0, 0.5, len(factors)),  # monotone, noisy
        0.3 * factors[:, 0] + rng.normal(0, 1.0, len(factors)),           # weak
        rng.normal(size=len(factors)),                                     # noise
        factors[:, 1] * 0.0 + 1.0,                                         # constant
    ])  # fmt: skip
    match = spearman_match(codes, factors, alpha=0.05)
    for j in range(codes.shape[1]):
        rhos, ps = [], []
        for k in range(factors.shape[1]):
            if np.ptp(codes[:, j]) == 0:
                rhos.append(0.0), ps.append(1.0)
                continue
            result = stats.spearmanr(codes[:, j], factors[:, k])
            rhos.append(abs(result.statistic)), ps.append(result.pvalue)
        assert match.rho[j] == pytest.approx(rhos, abs=1e-12)
        best = int(np.argmax(rhos))
        expected = best if ps[best] < 0.05 and rhos[best] > 0 else -1
        assert match.matched[j] == expected
    strengths = [match.rho[j, m] if m >= 0 else 0.0 for j, m in enumerate(match.matched)]
    assert match.mean_rho == pytest.approx(np.mean(strengths))
    assert match.matched[0] == 1 and match.matched[3] == -1


def test_bad_shapes_and_values_are_refused(rng):
    factors = _factors(rng, 10)
    with pytest.raises(ValueError, match="rows"):
        spearman_match(np.zeros((9, 2)), factors)
    with pytest.raises(ValueError, match="NaN"):
        spearman_match(np.full((10, 2), np.nan), factors)
