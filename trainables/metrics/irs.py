"""Interventional Robustness Score. Suter et al. 2019, "Robustly Disentangled Causal Mechanisms:
Validating Deep Representations for Interventional Robustness", Sec. 4 (arXiv 1811.00007).

IRS asks how far a code moves when every factor but its parent is intervened on. With independent,
uniformly sampled factors (the study's setting) the data already hold those interventions: the rows
sharing one value of factor k are draws with k fixed and the others free. For code j and factor k,
the spread is the ``diff_quantile`` quantile of |z_j - E[z_j | g_k]| within each value of g_k,
averaged over the values (each weighted equally, not by count); IRS[j, k] = 1 - spread / (largest
|z_j - E[z_j]|). A code's score is its best factor (its "parent"), and the headline score is the
mean of the code scores weighted by that largest deviation, so near-constant codes count little.

As disentanglement_lib 1.5's ``compute_irs`` (it logs ``avg_score`` as "IRS"):
- the factors are first binned into 20 equal-width histogram bins (the study's discretiser), which
  merges classes of factors with more than 20 values (dSprites position and orientation, Cars3D
  object); ``factor_bins=None`` groups by the classes as given;
- constant codes are dropped before scoring (a constant code has no deviation to normalise by);
  if every code is constant the score is 0.0.
Differences, deliberate: a code is constant when all its values are equal (the reference tests
``var > 0``, which can call a constant column active when its mean rounds); ``num_active_dims`` is
the count of non-constant codes (the reference reports the *sum of their values*, a bug); per-code
results cover all codes, with NaN scores and parent -1 for the constant ones.
Scores lie in [-1, 1]: a class's spread can reach the code's range, twice its largest deviation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._checks import check_codes_factors
from ._information import discretise


class IRSScores(NamedTuple):
    avg_score: float
    """Code scores averaged with their largest deviations as weights (disentanglement_lib's "IRS")."""
    num_active_dims: int
    disentanglement_scores: np.ndarray
    """(n_codes,): each code's IRS for its parent factor; NaN for a constant code."""
    parents: np.ndarray
    """(n_codes,): index of the factor each code is most robust to; -1 for a constant code."""
    irs_matrix: np.ndarray
    """(n_codes, n_factors): IRS of every (code, factor) pair; NaN rows for constant codes."""


def _class_spread(codes: np.ndarray, labels: np.ndarray, quantile: float) -> np.ndarray:
    """Mean over the classes of ``labels`` of the ``quantile`` of |code - class mean|: (n_codes,).

    One pass for all classes and codes: rows grouped by class, each column sorted within its
    class, then numpy's default (linear) quantile read off every class segment at once.
    """
    _, labels, counts = np.unique(labels, return_inverse=True, return_counts=True)
    order = np.argsort(labels, kind="stable")
    labels = labels[order]
    grouped = codes[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    means = np.add.reduceat(grouped, starts, axis=0) / counts[:, None]
    deviations = np.abs(grouped - means[labels])
    by_value = np.argsort(deviations, axis=0)
    by_class = np.argsort(labels[by_value], axis=0, kind="stable")  # stable: keeps value order
    ordered = np.take_along_axis(deviations, np.take_along_axis(by_value, by_class, axis=0), axis=0)
    position = quantile * (counts - 1)
    below = np.floor(position).astype(np.intp)
    above = np.minimum(below + 1, counts - 1)
    low, high = ordered[starts + below], ordered[starts + above]
    spread = low + (high - low) * (position - below)[:, None]  # (n_classes, n_codes)
    return spread.mean(axis=0)


def irs(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    diff_quantile: float = 0.99,
    factor_bins: int | None = 20,
) -> IRSScores:
    """Interventional Robustness Score of codes against discrete ground-truth factors.

    Args:
        codes: Representation, shape (n_samples, n_codes).
        factors: Discrete ground-truth factors, shape (n_samples, n_factors).
        diff_quantile: Quantile of the within-class deviations taken as a class's spread; 1.0 is the
            paper's maximum, 0.99 the study's (robust to a few outliers).
        factor_bins: Equal-width bins the factors are first discretised into, as the study does;
            None uses the factor classes as they are.

    Returns:
        ``IRSScores``; ``avg_score`` in [-1, 1], higher is better, 1.0 when each code is a function
        of one factor only.

    Example:
        >>> import numpy as np
        >>> factors = np.random.default_rng(0).integers(0, 5, (1000, 2))
        >>> irs(factors.astype(float), factors).avg_score
        1.0
    """
    codes, factors = check_codes_factors(codes, factors)
    if not 0.0 <= diff_quantile <= 1.0:
        raise ValueError(f"diff_quantile must be in [0, 1], got {diff_quantile}")
    if factor_bins is not None:
        if factor_bins < 1:
            raise ValueError(f"factor_bins must be at least 1, got {factor_bins}")
        factors = discretise(factors, factor_bins)
    n_codes, n_factors = codes.shape[1], factors.shape[1]
    active = np.ptp(codes, axis=0) > 0
    matrix = np.full((n_codes, n_factors), np.nan)
    scores = np.full(n_codes, np.nan)
    parents = np.full(n_codes, -1, dtype=np.intp)
    if not active.any():  # every code collapsed: the reference scores 0
        return IRSScores(0.0, 0, scores, parents, matrix)

    live = codes[:, active]
    max_deviation = np.abs(live - live.mean(axis=0)).max(axis=0)  # > 0 for a non-constant code
    spread = np.column_stack(
        [_class_spread(live, factors[:, k], diff_quantile) for k in range(n_factors)]
    )
    matrix[active] = 1.0 - spread / max_deviation[:, None]
    scores[active] = matrix[active].max(axis=1)
    parents[active] = matrix[active].argmax(axis=1)
    avg_score = float(np.average(scores[active], weights=max_deviation))
    return IRSScores(avg_score, int(active.sum()), scores, parents, matrix)
