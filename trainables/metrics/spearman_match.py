"""Code dimensions matched to factors by rank correlation (the multi-task paper, Appendix I, Table 7).

Each code dimension is matched to the factor it correlates with most (absolute Spearman rho),
if that correlation is significant; the score is how many distinct factors are matched and how
strongly. The paper states the matching but not which components its mean runs over; its Table 7
has a minimum of 0.000, so a component without a significant match counts with rho 0 here, and
the mean runs over every code dimension.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats

from ._checks import check_codes_factors


class SpearmanMatch(NamedTuple):
    factors_found: int
    """Distinct factors that some code dimension is matched to."""
    mean_rho: float
    """Mean over code dimensions of |rho| with the matched factor (0 where none is significant)."""
    rho: np.ndarray
    """(n_codes, n_factors) absolute Spearman correlations (0 for a constant column)."""
    matched: np.ndarray
    """(n_codes,) the matched factor per code dimension, -1 where none."""


def spearman_match(codes: np.ndarray, factors: np.ndarray, *, alpha: float = 0.05) -> SpearmanMatch:
    """Match each code dimension to its most rank-correlated factor.

    Args:
        codes: Representation, shape (n_samples, n_codes).
        factors: Ground-truth factor classes, shape (n_samples, n_factors).
        alpha: A match needs the correlation's two-sided p-value below this.

    Returns:
        ``SpearmanMatch``; a constant code correlates with nothing.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> factors = rng.integers(0, 10, size=(500, 2))
        >>> spearman_match(factors[:, ::-1].astype(float), factors).factors_found
        2
    """
    codes, factors = check_codes_factors(codes, factors)
    if len(codes) < 3:
        raise ValueError("Spearman correlation needs at least 3 samples")
    n_codes, n_factors = codes.shape[1], factors.shape[1]
    rho = np.zeros((n_codes, n_factors))
    p = np.ones((n_codes, n_factors))
    varying_codes = [j for j in range(n_codes) if np.ptp(codes[:, j]) > 0]
    varying_factors = [k for k in range(n_factors) if np.ptp(factors[:, k]) > 0]
    if varying_codes and varying_factors:
        # one rank correlation matrix over every varying column (scipy ranks each column once)
        joined = np.hstack([codes[:, varying_codes], factors[:, varying_factors]])
        result = stats.spearmanr(joined)
        r = np.atleast_2d(result.statistic)
        pv = np.atleast_2d(result.pvalue)
        nc = len(varying_codes)
        rho[np.ix_(varying_codes, varying_factors)] = np.abs(r[:nc, nc:])
        p[np.ix_(varying_codes, varying_factors)] = pv[:nc, nc:]
    best = rho.argmax(axis=1)
    rows = np.arange(n_codes)
    significant = (p[rows, best] < alpha) & (rho[rows, best] > 0)
    matched = np.where(significant, best, -1)
    strength = np.where(significant, rho[rows, best], 0.0)
    found = len(set(matched[matched >= 0].tolist()))
    return SpearmanMatch(int(found), float(strength.mean()), rho, matched)
