"""Mutual Information Gap. Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs", Sec. 4.1."""

from __future__ import annotations

import numpy as np

from ._checks import check_codes_factors
from ._information import discretise, entropy, mutual_information


def mig(codes: np.ndarray, factors: np.ndarray, *, n_bins: int = 20) -> float:
    """Mean over factors of the entropy-normalised gap between the two most informative codes.

    Args:
        codes: Representation, shape (n_samples, n_codes).
        factors: Discrete ground-truth factors, shape (n_samples, n_factors).
        n_bins: Equal-width histogram bins used to discretise each code.

    Returns:
        MIG in [0, 1]; higher is better.

    Example:
        >>> import numpy as np
        >>> factors = np.random.default_rng(0).integers(0, 5, (1000, 2))
        >>> round(mig(factors.astype(float), factors), 3)
        1.0
    """
    return mig_from_mutual_information(
        mutual_information_matrix(codes, factors, n_bins=n_bins), factors
    )


def mutual_information_matrix(
    codes: np.ndarray, factors: np.ndarray, *, n_bins: int = 20
) -> np.ndarray:
    """Plug-in MI (nats) of each binned code with each factor, shape (n_codes, n_factors)."""
    codes, factors = check_codes_factors(codes, factors)
    if codes.shape[1] < 2:
        raise ValueError("mig needs at least 2 code dimensions")
    return mutual_information(discretise(codes, n_bins), factors)


def mig_from_mutual_information(mi: np.ndarray, factors: np.ndarray) -> float:
    """MIG from an MI matrix (n_codes, n_factors) and the factors whose entropies normalise it."""
    top = np.sort(mi, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / entropy(np.asarray(factors))))
