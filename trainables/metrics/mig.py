"""Mutual Information Gap. Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs", Sec. 4.1."""

from __future__ import annotations

import numpy as np

from ._checks import check_codes_factors
from ._information import discretise, entropy, mutual_information

ESTIMATORS = ("histogram", "quantile", "knn")


def mig(
    codes: np.ndarray, factors: np.ndarray, *, n_bins: int = 20, estimator: str = "histogram"
) -> float:
    """Mean over factors of the entropy-normalised gap between the two most informative codes.

    Args:
        codes: Representation, shape (n_samples, n_codes).
        factors: Discrete ground-truth factors, shape (n_samples, n_factors).
        n_bins: Bins used to discretise each code (``histogram`` and ``quantile``).
        estimator: How MI(code; factor) is estimated: ``histogram`` (disentanglement_lib's and the
            default: equal-width bins over each code's range), ``quantile`` (equal-frequency bins)
            or ``knn`` (Kraskov-style k-NN estimate, 3 neighbours, via scikit-learn).

    Returns:
        MIG in [0, 1]; higher is better.

    Example:
        >>> import numpy as np
        >>> factors = np.random.default_rng(0).integers(0, 5, (1000, 2))
        >>> round(mig(factors.astype(float), factors), 3)
        1.0
    """
    return mig_from_mutual_information(
        mutual_information_matrix(codes, factors, n_bins=n_bins, estimator=estimator), factors
    )


def mutual_information_matrix(
    codes: np.ndarray, factors: np.ndarray, *, n_bins: int = 20, estimator: str = "histogram"
) -> np.ndarray:
    """MI (nats) of each code with each factor, shape (n_codes, n_factors)."""
    codes, factors = check_codes_factors(codes, factors)
    if codes.shape[1] < 2:
        raise ValueError("mig needs at least 2 code dimensions")
    if estimator == "histogram":
        return mutual_information(discretise(codes, n_bins), factors)
    if estimator == "quantile":
        return mutual_information(_quantile_bins(codes, n_bins), factors)
    if estimator == "knn":
        from sklearn.feature_selection import mutual_info_classif

        # k-NN MI between a continuous code and a discrete factor; fixed seed (its jitter only)
        return np.stack(
            [
                mutual_info_classif(codes, factors[:, k], n_neighbors=3, random_state=0)
                for k in range(factors.shape[1])
            ],
            axis=1,
        )
    raise ValueError(f"unknown MIG estimator {estimator!r}; known: {list(ESTIMATORS)}")


def _quantile_bins(codes: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-frequency bins per code: ids 0..n_bins-1 (ties may leave fewer bins)."""
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.quantile(codes[:, j], np.linspace(0, 1, n_bins + 1)[1:-1])
        out[:, j] = np.searchsorted(edges, codes[:, j], side="right")
    return out


def mig_from_mutual_information(mi: np.ndarray, factors: np.ndarray) -> float:
    """MIG from an MI matrix (n_codes, n_factors) and the factors whose entropies normalise it."""
    top = np.sort(mi, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / entropy(np.asarray(factors))))
